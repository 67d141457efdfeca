//! Device selection: `auto`, `cpu` or `cuda:N`.

use candle_core::Device;

use crate::error::{Error, Result};

/// The device for `spec`. `auto` is a GPU when the binary has CUDA and one
/// is present, else the CPU.
pub fn select(spec: &str) -> Result<Device> {
    match spec {
        "cpu" => Ok(Device::Cpu),
        "auto" => {
            if candle_core::utils::cuda_is_available() {
                Ok(Device::new_cuda(0)?)
            } else {
                Ok(Device::Cpu)
            }
        }
        s if s.starts_with("cuda") => {
            let ordinal = match s.strip_prefix("cuda:") {
                Some(n) => n
                    .parse::<usize>()
                    .map_err(|_| Error::Recipe(format!("device `{s}`: expected cuda:N")))?,
                None if s == "cuda" => 0,
                None => {
                    return Err(Error::Recipe(format!(
                        "device `{s}`: expected auto, cpu or cuda:N"
                    )))
                }
            };
            if !candle_core::utils::cuda_is_available() {
                return Err(Error::Recipe(format!(
                    "device `{s}`: this binary was built without CUDA (build with --features cuda)"
                )));
            }
            Ok(Device::new_cuda(ordinal)?)
        }
        s => Err(Error::Recipe(format!(
            "device `{s}`: expected auto, cpu or cuda:N"
        ))),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_specs() {
        assert!(super::select("cpu").unwrap().is_cpu());
        assert!(super::select("auto").is_ok());
        assert!(super::select("tpu").is_err());
        assert!(super::select("cuda:x").is_err());
    }
}
