//! Device selection: `auto`, `cpu` or `cuda:N` (`cuda` is `cuda:0`).
//!
//! CUDA needs a binary built with the `cuda` cargo feature (see the CUDA
//! section of framework/core/README.md). Without it, `cuda:N` is an error that says how to build
//! one, and `auto` is the CPU. With it, `auto` is `cuda:0` when the driver
//! reports a GPU and the CPU when it reports none; any other driver failure
//! is an error rather than a silent fall-back to the CPU.

use candle_core::Device;

use crate::error::{Error, Result};

/// How to build a binary with CUDA, for error messages.
pub const CUDA_BUILD_HINT: &str = "build with the `cuda` feature: \
     `source <(scripts/setup-cuda.sh) && cargo build --release --features cuda` \
     (see the CUDA section of framework/core/README.md)";

/// A parsed device specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spec {
    /// A GPU when the binary has CUDA and the machine has a GPU, else the CPU.
    Auto,
    /// The CPU.
    Cpu,
    /// The CUDA GPU with this ordinal.
    Cuda(usize),
}

impl Spec {
    /// Parses `auto`, `cpu`, `cuda` or `cuda:N`.
    pub fn parse(spec: &str) -> Result<Spec> {
        match spec {
            "auto" => Ok(Spec::Auto),
            "cpu" => Ok(Spec::Cpu),
            "cuda" => Ok(Spec::Cuda(0)),
            s => match s.strip_prefix("cuda:") {
                Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => n
                    .parse::<usize>()
                    .map(Spec::Cuda)
                    .map_err(|_| Error::Device(format!("`{s}`: GPU ordinal out of range"))),
                Some(_) => Err(Error::Device(format!(
                    "`{s}`: expected cuda:N with N a GPU ordinal (0, 1, ...)"
                ))),
                None => Err(Error::Device(format!(
                    "`{s}`: expected auto, cpu or cuda:N"
                ))),
            },
        }
    }
}

/// Whether this binary was built with CUDA (the `cuda` feature).
pub fn cuda_compiled() -> bool {
    cfg!(feature = "cuda")
}

/// The device for `spec` (see [`Spec`]).
pub fn select(spec: &str) -> Result<Device> {
    match Spec::parse(spec)? {
        Spec::Cpu => Ok(Device::Cpu),
        Spec::Auto => auto(),
        Spec::Cuda(ordinal) => cuda(spec, ordinal),
    }
}

#[cfg(not(feature = "cuda"))]
fn auto() -> Result<Device> {
    Ok(Device::Cpu)
}

#[cfg(not(feature = "cuda"))]
fn cuda(spec: &str, _ordinal: usize) -> Result<Device> {
    Err(Error::Device(format!(
        "`{spec}`: this binary was built without CUDA; {CUDA_BUILD_HINT}"
    )))
}

#[cfg(feature = "cuda")]
fn auto() -> Result<Device> {
    match gpu::count() {
        Ok(0) => Ok(Device::Cpu),
        Ok(_) => Device::new_cuda(0)
            .map_err(|e| Error::Device(format!("`auto` (cuda:0): cannot open the GPU: {e}"))),
        Err(e) => Err(Error::Device(format!(
            "`auto`: the CUDA driver failed ({e}); pass `--device cpu` to use the CPU"
        ))),
    }
}

#[cfg(feature = "cuda")]
fn cuda(spec: &str, ordinal: usize) -> Result<Device> {
    let count = gpu::count()
        .map_err(|e| Error::Device(format!("`{spec}`: the CUDA driver failed ({e})")))?;
    if count == 0 {
        return Err(Error::Device(format!(
            "`{spec}`: no CUDA GPU found on this machine (the driver reports none, \
             or there is no NVIDIA driver)"
        )));
    }
    if ordinal >= count {
        return Err(Error::Device(format!(
            "`{spec}`: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{}",
            count - 1
        )));
    }
    Device::new_cuda(ordinal)
        .map_err(|e| Error::Device(format!("`{spec}`: cannot open the GPU: {e}")))
}

#[cfg(feature = "cuda")]
mod gpu {
    use candle_core::cuda_backend::cudarc::driver::{sys::CUresult, CudaContext};

    /// The number of CUDA GPUs: 0 when the driver reports none or is the
    /// toolkit's stub library (no NVIDIA driver); an error naming the
    /// driver's error code otherwise.
    pub(super) fn count() -> std::result::Result<usize, String> {
        match CudaContext::device_count() {
            Ok(n) => Ok(usize::try_from(n).unwrap_or(0)),
            Err(e)
                if matches!(
                    e.0,
                    CUresult::CUDA_ERROR_NO_DEVICE | CUresult::CUDA_ERROR_STUB_LIBRARY
                ) =>
            {
                Ok(0)
            }
            Err(e) => Err(format!("{:?}", e.0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{select, Spec};

    #[test]
    fn parses_specs() {
        assert_eq!(Spec::parse("auto").unwrap(), Spec::Auto);
        assert_eq!(Spec::parse("cpu").unwrap(), Spec::Cpu);
        assert_eq!(Spec::parse("cuda").unwrap(), Spec::Cuda(0));
        assert_eq!(Spec::parse("cuda:0").unwrap(), Spec::Cuda(0));
        assert_eq!(Spec::parse("cuda:3").unwrap(), Spec::Cuda(3));
        for bad in [
            "tpu", "gpu", "CPU", "", "cuda:", "cuda:x", "cuda:-1", "cuda:+1", "cuda0",
        ] {
            let e = Spec::parse(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("`{bad}`")), "{bad}: {e}");
        }
        let e = Spec::parse("cuda:99999999999999999999999").unwrap_err();
        assert!(e.to_string().contains("out of range"), "{e}");
    }

    #[test]
    fn cpu_is_the_cpu() {
        assert!(select("cpu").unwrap().is_cpu());
    }

    #[test]
    fn bad_specs_are_errors_before_any_device_is_touched() {
        let e = select("tpu").unwrap_err().to_string();
        assert!(e.contains("expected auto, cpu or cuda:N"), "{e}");
        assert!(select("cuda:x").is_err());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn without_the_feature_auto_is_the_cpu() {
        assert!(!super::cuda_compiled());
        assert!(select("auto").unwrap().is_cpu());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn without_the_feature_cuda_names_the_feature_and_the_build_command() {
        for spec in ["cuda", "cuda:0", "cuda:1"] {
            let e = select(spec).unwrap_err().to_string();
            assert!(e.contains(&format!("`{spec}`")), "{e}");
            assert!(e.contains("built without CUDA"), "{e}");
            assert!(e.contains("`cuda` feature"), "{e}");
            assert!(e.contains("cargo build --release --features cuda"), "{e}");
        }
    }

    /// With the feature, `auto` never fails on a machine without a GPU (it is
    /// the CPU there) and is a CUDA device on one with a GPU.
    #[cfg(feature = "cuda")]
    #[test]
    fn with_the_feature_auto_follows_the_driver() {
        assert!(super::cuda_compiled());
        let gpus = super::gpu::count().unwrap();
        let d = select("auto").unwrap();
        assert_eq!(d.is_cuda(), gpus > 0);
        if gpus == 0 {
            let e = select("cuda:0").unwrap_err().to_string();
            assert!(e.contains("no CUDA GPU"), "{e}");
        } else {
            let e = select(&format!("cuda:{gpus}")).unwrap_err().to_string();
            assert!(e.contains("CUDA GPU(s)"), "{e}");
        }
    }
}
