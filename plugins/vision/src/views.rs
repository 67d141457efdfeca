//! The image view generator: `views` independent draws of one augmentation
//! pipeline (SimCLR's two views), each a list of single-image transforms.

use std::sync::Arc;

use parallax_core::batch::{Field, Sample};
use parallax_core::data::BuildCtx;
use parallax_core::error::{Error, Result};
use parallax_core::recipe::Params;
use parallax_core::rng::Rng;
use parallax_core::views::ViewGenerator;
use serde::Deserialize;

use crate::augment::{simclr_default, Pipeline, PipelineConfig};
use crate::image::Image;

/// `[views] name = "image"` options.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageViewsConfig {
    /// Views per image.
    #[serde(default = "two")]
    views: usize,
    /// The transforms, in order; default: SimCLR's pipeline for the data's
    /// image size (random resized crop, flip, colour jitter, grayscale).
    #[serde(default)]
    transforms: Option<Vec<PipelineConfig>>,
}

fn two() -> usize {
    2
}

/// Draws `n` augmented views of the `image` field.
pub struct ImageViews {
    n: usize,
    pipeline: Pipeline,
}

impl ViewGenerator for ImageViews {
    fn num_views(&self) -> usize {
        self.n
    }

    fn generate(&self, sample: &Sample, rng: &mut Rng) -> Result<Vec<Sample>> {
        let img = image_of(sample, "image")?;
        (0..self.n)
            .map(|_| Ok(with_image(sample, self.pipeline.apply(&img, rng.core()))))
            .collect()
    }
}

/// The `image` field of `sample` as an [`Image`]; `who` names the view
/// generator in errors.
pub fn image_of(sample: &Sample, who: &str) -> Result<Image> {
    let Some(Field::F32 { shape, data }) = sample.get("image") else {
        return Err(Error::Shape(format!(
            "{who} views need an `image` field of floats"
        )));
    };
    let [c, h, w] = shape[..] else {
        return Err(Error::Shape(format!(
            "{who} views need images [C, H, W], got {shape:?}"
        )));
    };
    Ok(Image {
        channels: c,
        height: h,
        width: w,
        data: data.clone(),
    })
}

/// A copy of `sample` whose `image` field is `img`.
pub fn with_image(sample: &Sample, img: Image) -> Sample {
    let mut s = sample.clone();
    s.insert(
        "image",
        Field::F32 {
            shape: vec![img.channels, img.height, img.width],
            data: img.data,
        },
    );
    s
}

fn build(p: &Params, ctx: &BuildCtx) -> Result<Arc<dyn ViewGenerator>> {
    let c: ImageViewsConfig = p.extract()?;
    if c.views == 0 {
        return Err(p.error("views", "must be at least 1"));
    }
    let transforms = match c.transforms {
        Some(t) => t,
        None => {
            let [ch, h, _] = ctx.meta.image_shape.ok_or_else(|| {
                p.error(
                    "transforms",
                    "the data source has no image shape: list the transforms",
                )
            })?;
            simclr_default(h, ch)
        }
    };
    for (i, t) in transforms.iter().enumerate() {
        t.validate()
            .map_err(|m| p.error(&format!("transforms.{i}"), m))?;
    }
    Ok(Arc::new(ImageViews {
        n: c.views,
        pipeline: Pipeline::from_configs(&transforms),
    }))
}

parallax_core::register!(
    views,
    "image",
    "n draws of an image augmentation pipeline (default: SimCLR's crop, flip, jitter, grayscale)",
    build
);
