//! The multi-crop view generator of SwAV (Caron et al., "Unsupervised
//! Learning of Visual Features by Contrasting Cluster Assignments", NeurIPS
//! 2020) and DINO (Caron et al., "Emerging Properties in Self-Supervised
//! Vision Transformers", ICCV 2021): a few large "global" crops and several
//! small "local" crops of each image.
//!
//! ```toml
//! [views]
//! name = "multi_crop"
//! global_crops = 2
//! local_crops = 6
//! local_size = 12
//! global_transforms = [{ name = "gaussian_blur", p = 1.0 }]
//! ```

use std::sync::Arc;

use parallax_core::batch::Sample;
use parallax_core::data::BuildCtx;
use parallax_core::error::Result;
use parallax_core::recipe::Params;
use parallax_core::rng::Rng;
use parallax_core::views::ViewGenerator;
use serde::Deserialize;

use crate::augment::{simclr_default, Pipeline, PipelineConfig, RandomResizedCrop, Transform};
use crate::views::{image_of, with_image};

/// `[views] name = "multi_crop"` options. Defaults are DINO's: 2 global
/// crops of area scale (0.4, 1.0) and 6 local crops of scale (0.05, 0.4),
/// local crops 96/224 = 3/7 of the global size.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MultiCropConfig {
    /// Number of global crops; default 2.
    #[serde(default = "two")]
    global_crops: usize,
    /// Side of the global crops; default: the data's image height.
    #[serde(default)]
    global_size: Option<usize>,
    /// Area scale of the global crops; default (0.4, 1.0).
    #[serde(default = "global_scale")]
    global_scale: (f32, f32),
    /// Number of local crops; default 6.
    #[serde(default = "six")]
    local_crops: usize,
    /// Side of the local crops; default 3/7 of the data's image height
    /// (12 for 28 pixels, 96 for 224).
    #[serde(default)]
    local_size: Option<usize>,
    /// Area scale of the local crops; default (0.05, 0.4).
    #[serde(default = "local_scale")]
    local_scale: (f32, f32),
    /// Aspect-ratio range of every crop; default (3/4, 4/3).
    #[serde(default = "ratio")]
    ratio: (f32, f32),
    /// Transforms after every crop; default: SimCLR's flip and colour
    /// jitter (and random grayscale on colour images) for the data's
    /// channels, without its crop.
    #[serde(default)]
    transforms: Option<Vec<PipelineConfig>>,
    /// Extra transforms for the global crops, after `transforms`.
    #[serde(default)]
    global_transforms: Vec<PipelineConfig>,
    /// Extra transforms for the local crops, after `transforms`.
    #[serde(default)]
    local_transforms: Vec<PipelineConfig>,
}

fn two() -> usize {
    2
}

fn six() -> usize {
    6
}

fn global_scale() -> (f32, f32) {
    (0.4, 1.0)
}

fn local_scale() -> (f32, f32) {
    (0.05, 0.4)
}

fn ratio() -> (f32, f32) {
    (3.0 / 4.0, 4.0 / 3.0)
}

/// Default local crop side for images of side `size`: 3/7 of it, as DINO's
/// 96 for 224.
pub fn default_local_size(size: usize) -> usize {
    ((size as f32 * 3.0 / 7.0).round() as usize).max(1)
}

/// One group of crops: the crop, then a pipeline.
struct Group {
    count: usize,
    crop: RandomResizedCrop,
    pipeline: Pipeline,
}

/// Draws `global_crops` global views, then `local_crops` local views, of
/// the `image` field; the other fields are copied into every view.
pub struct MultiCrop {
    groups: [Group; 2],
}

impl MultiCrop {
    /// The side of view `i`'s image.
    pub fn view_size(&self, i: usize) -> Option<usize> {
        let g = &self.groups;
        if i < g[0].count {
            Some(g[0].crop.size)
        } else if i < g[0].count + g[1].count {
            Some(g[1].crop.size)
        } else {
            None
        }
    }
}

impl ViewGenerator for MultiCrop {
    fn num_views(&self) -> usize {
        self.groups.iter().map(|g| g.count).sum()
    }

    fn generate(&self, sample: &Sample, rng: &mut Rng) -> Result<Vec<Sample>> {
        let img = image_of(sample, "multi_crop")?;
        let mut views = Vec::with_capacity(self.num_views());
        for g in &self.groups {
            for _ in 0..g.count {
                let cropped = g.crop.apply(&img, rng.core());
                views.push(with_image(sample, g.pipeline.apply(&cropped, rng.core())));
            }
        }
        Ok(views)
    }
}

/// Checks every transform of a list, naming `key.i` on error.
fn check(p: &Params, key: &str, list: &[PipelineConfig]) -> Result<()> {
    for (i, t) in list.iter().enumerate() {
        t.validate()
            .map_err(|m| p.error(&format!("{key}.{i}"), m))?;
    }
    Ok(())
}

fn build(p: &Params, ctx: &BuildCtx) -> Result<Arc<dyn ViewGenerator>> {
    let c: MultiCropConfig = p.extract()?;
    if c.global_crops + c.local_crops == 0 {
        return Err(p.error(
            "global_crops",
            "global_crops + local_crops must be at least 1",
        ));
    }
    let shape = ctx.meta.image_shape;
    let need_shape = |key: &str| {
        p.error(
            key,
            "the data source has no image shape: give the crop sizes and the transforms",
        )
    };
    let global_size = match (c.global_size, shape) {
        (Some(s), _) => s,
        (None, Some([_, h, _])) => h,
        (None, None) => return Err(need_shape("global_size")),
    };
    let local_size = match (c.local_size, shape) {
        (Some(s), _) => s,
        (None, Some([_, h, _])) => default_local_size(h),
        (None, None) => return Err(need_shape("local_size")),
    };
    let shared = match c.transforms {
        Some(t) => t,
        None => {
            let [ch, h, _] = shape.ok_or_else(|| need_shape("transforms"))?;
            // SimCLR's pipeline without its crop: flip, jitter, grayscale.
            simclr_default(h, ch).into_iter().skip(1).collect()
        }
    };
    let groups = [
        (
            "global",
            c.global_crops,
            global_size,
            c.global_scale,
            c.global_transforms,
        ),
        (
            "local",
            c.local_crops,
            local_size,
            c.local_scale,
            c.local_transforms,
        ),
    ];
    check(p, "transforms", &shared)?;
    let mut built = Vec::with_capacity(2);
    for (group, count, size, scale, extra) in groups {
        let crop = RandomResizedCrop {
            size,
            scale,
            ratio: c.ratio,
        };
        crop.validate().map_err(|m| {
            let key = if m.starts_with("size") {
                format!("{group}_size")
            } else if m.starts_with("ratio") {
                "ratio".to_string()
            } else {
                format!("{group}_scale")
            };
            p.error(&key, m)
        })?;
        check(p, &format!("{group}_transforms"), &extra)?;
        let list: Vec<PipelineConfig> = shared.iter().chain(&extra).cloned().collect();
        built.push(Group {
            count,
            crop,
            pipeline: Pipeline::from_configs(&list),
        });
    }
    let [global, local]: [Group; 2] = match built.try_into() {
        Ok(g) => g,
        Err(_) => unreachable!("two groups"),
    };
    Ok(Arc::new(MultiCrop {
        groups: [global, local],
    }))
}

parallax_core::register!(
    views,
    "multi_crop",
    "SwAV/DINO multi-crop: global crops (scale 0.4-1) then small local crops (scale 0.05-0.4)",
    build
);

#[cfg(test)]
mod tests {
    use super::*;
    use parallax_core::batch::Field;
    use parallax_core::data::{DataMeta, Split};

    fn ctx(shape: Option<[usize; 3]>) -> BuildCtx {
        let mut ctx = BuildCtx::new(0, Split::Train);
        ctx.meta = DataMeta {
            image_shape: shape,
            ..DataMeta::default()
        };
        ctx
    }

    fn views(toml_text: &str, shape: Option<[usize; 3]>) -> Result<Arc<dyn ViewGenerator>> {
        let table: toml::Table = toml::from_str(toml_text).expect("valid TOML");
        let params = Params::from_toml("views", table)?;
        let entry = parallax_core::registry::views("multi_crop")?;
        (entry.build)(&params, &ctx(shape))
    }

    fn sample(c: usize, h: usize, w: usize) -> Sample {
        let n = c * h * w;
        let mut s = Sample::with(
            "image",
            Field::F32 {
                shape: vec![c, h, w],
                data: (0..n).map(|i| (i * 37 % 101) as f32 / 100.0).collect(),
            },
        );
        s.insert("label", Field::label(3));
        s
    }

    fn shapes(v: &[Sample]) -> Vec<Vec<usize>> {
        v.iter()
            .map(|s| s.get("image").expect("image").shape().to_vec())
            .collect()
    }

    #[test]
    fn defaults_follow_dino() {
        let g = views("", Some([1, 28, 28])).expect("builds");
        assert_eq!(g.num_views(), 8);
        let out = g
            .generate(&sample(1, 28, 28), &mut Rng::new(1))
            .expect("views");
        let mut expected = vec![vec![1, 28, 28]; 2];
        expected.extend(vec![vec![1, 12, 12]; 6]);
        assert_eq!(shapes(&out), expected);
        assert!(out.iter().all(|s| s.get("label") == Some(&Field::label(3))));
        assert_eq!(default_local_size(224), 96);
        assert_eq!(default_local_size(32), 14);
    }

    #[test]
    fn counts_sizes_and_colour() {
        let g = views(
            r#"global_crops = 1
               local_crops = 3
               global_size = 20
               local_size = 8
               local_transforms = [{ name = "solarize", p = 1.0 }]"#,
            Some([3, 32, 24]),
        )
        .expect("builds");
        assert_eq!(g.num_views(), 4);
        let out = g
            .generate(&sample(3, 32, 24), &mut Rng::new(2))
            .expect("views");
        assert_eq!(
            shapes(&out),
            [vec![3, 20, 20], vec![3, 8, 8], vec![3, 8, 8], vec![3, 8, 8]]
        );
    }

    #[test]
    fn same_seed_same_views() {
        let g = views("local_crops = 2", Some([3, 16, 16])).expect("builds");
        let s = sample(3, 16, 16);
        let draw = |seed| g.generate(&s, &mut Rng::new(seed)).expect("views");
        assert_eq!(draw(5), draw(5));
        assert_ne!(draw(5), draw(6));
        let out = draw(5);
        assert_ne!(out[0], out[1], "two global crops should differ");
    }

    #[test]
    fn errors_name_the_key() {
        let err = |text: &str, shape| match views(text, shape) {
            Ok(_) => panic!("{text} should fail"),
            Err(e) => e.to_string(),
        };
        let e = err("", None);
        assert!(e.contains("global_size"), "{e}");
        let e = err("global_crops = 0\nlocal_crops = 0", Some([1, 28, 28]));
        assert!(e.contains("global_crops"), "{e}");
        let e = err("local_scale = [0.5, 0.1]", Some([1, 28, 28]));
        assert!(e.contains("local_scale"), "{e}");
        let e = err("local_size = 0", Some([1, 28, 28]));
        assert!(e.contains("local_size"), "{e}");
        let e = err(
            "global_transforms = [{ name = \"cutout\", holes = 0 }]",
            Some([1, 28, 28]),
        );
        assert!(e.contains("global_transforms.0"), "{e}");
        let e = err("local_crop = 3", Some([1, 28, 28]));
        assert!(e.contains("local_crop"), "{e}");
    }
}
