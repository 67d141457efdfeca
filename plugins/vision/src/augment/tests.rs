use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

/// An image of uniform random values.
fn noise(channels: usize, height: usize, width: usize, seed: u64) -> Image {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let data = (0..channels * height * width)
        .map(|_| rng.random::<f32>())
        .collect();
    Image::new(channels, height, width, data).expect("right length")
}

fn in_unit_range(img: &Image) -> bool {
    img.data.iter().all(|v| (0.0..=1.0).contains(v))
}

#[derive(Deserialize)]
struct Recipe {
    transforms: Vec<PipelineConfig>,
}

fn parse(toml_text: &str) -> Result<Vec<PipelineConfig>, String> {
    toml::from_str::<Recipe>(toml_text)
        .map(|r| r.transforms)
        .map_err(|e| e.to_string())
}

#[test]
fn same_seed_same_views() {
    for (size, channels) in [(28, 1), (32, 3)] {
        let pipeline = Pipeline::from_configs(&simclr_default(size, channels));
        let img = noise(channels, size, size, 11);
        let draw = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..5)
                .map(|_| pipeline.apply(&img, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }
}

#[test]
fn flip_twice_is_identity() {
    let flip = HorizontalFlip { p: 1.0 };
    let img = noise(3, 5, 6, 1);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let once = flip.apply(&img, &mut rng);
    assert_ne!(once, img);
    assert_eq!(flip.apply(&once, &mut rng), img);
    let never = HorizontalFlip { p: 0.0 };
    assert_eq!(never.apply(&img, &mut rng), img);
}

#[test]
fn crop_output_size() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for (channels, h, w, size) in [(1, 28, 28, 28), (1, 28, 28, 20), (3, 32, 48, 36)] {
        let crop = RandomResizedCrop::new(size);
        let out = crop.apply(&noise(channels, h, w, 2), &mut rng);
        assert_eq!(
            (out.channels, out.height, out.width),
            (channels, size, size)
        );
        assert!(in_unit_range(&out));
    }
}

#[test]
fn jitter_keeps_values_in_unit_range() {
    let jitter = ColorJitter {
        p: 1.0,
        brightness: 2.0,
        contrast: 2.0,
        saturation: 2.0,
        hue: 0.5,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    for seed in 0..50 {
        for channels in [1, 3] {
            let img = noise(channels, 6, 6, seed);
            let out = jitter.apply(&img, &mut rng);
            assert_eq!(out.data.len(), img.data.len());
            assert!(in_unit_range(&out), "seed {seed}, {channels} channels");
        }
    }
}

#[test]
fn jitter_changes_gray_images() {
    let jitter = ColorJitter {
        p: 1.0,
        ..ColorJitter::default()
    };
    let img = noise(1, 8, 8, 5);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    assert_ne!(jitter.apply(&img, &mut rng), img);
}

#[test]
fn grayscale_equalises_channels() {
    let gray = RandomGrayscale { p: 1.0 };
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let out = gray.apply(&noise(3, 4, 4, 6), &mut rng);
    assert_eq!(out.channels, 3);
    assert_eq!(out.plane(0), out.plane(1));
    assert_eq!(out.plane(0), out.plane(2));
    let one = noise(1, 4, 4, 6);
    assert_eq!(gray.apply(&one, &mut rng), one);
}

#[test]
fn normalize_per_channel_and_broadcast() {
    let img = Image::new(2, 1, 2, vec![0.5, 1.0, 0.0, 0.25]).expect("4 values");
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let per_channel = Normalize {
        mean: vec![0.5, 0.0],
        std: vec![0.5, 0.25],
    };
    assert_eq!(
        per_channel.apply(&img, &mut rng).data,
        vec![0.0, 1.0, 0.0, 1.0]
    );
    let shared = Normalize {
        mean: vec![0.5],
        std: vec![0.5],
    };
    assert_eq!(
        shared.apply(&img, &mut rng).data,
        vec![0.0, 1.0, -1.0, -0.5]
    );
}

#[test]
fn validation_errors_name_the_field() {
    let cases: Vec<(PipelineConfig, &str)> = vec![
        (
            PipelineConfig::RandomResizedCrop(RandomResizedCrop::new(0)),
            "size must be at least 1",
        ),
        (
            PipelineConfig::RandomResizedCrop(RandomResizedCrop {
                scale: (0.9, 0.2),
                ..RandomResizedCrop::new(28)
            }),
            "scale minimum 0.9 is larger than its maximum 0.2",
        ),
        (
            PipelineConfig::RandomResizedCrop(RandomResizedCrop {
                scale: (0.0, 1.0),
                ..RandomResizedCrop::new(28)
            }),
            "scale must lie in (0, 1]",
        ),
        (
            PipelineConfig::RandomResizedCrop(RandomResizedCrop {
                ratio: (2.0, 0.5),
                ..RandomResizedCrop::new(28)
            }),
            "ratio minimum 2 is larger",
        ),
        (
            PipelineConfig::HorizontalFlip(HorizontalFlip { p: 1.5 }),
            "p must be a probability in [0, 1], got 1.5",
        ),
        (
            PipelineConfig::ColorJitter(ColorJitter {
                contrast: -0.1,
                ..ColorJitter::default()
            }),
            "contrast must be a finite number >= 0",
        ),
        (
            PipelineConfig::ColorJitter(ColorJitter {
                hue: 0.7,
                ..ColorJitter::default()
            }),
            "hue must lie in [0, 0.5], got 0.7",
        ),
        (
            PipelineConfig::RandomGrayscale(RandomGrayscale { p: f32::NAN }),
            "p must be a probability",
        ),
        (
            PipelineConfig::Normalize(Normalize {
                mean: vec![0.5, 0.5],
                std: vec![0.5],
            }),
            "std has 1 values but mean has 2",
        ),
        (
            PipelineConfig::Normalize(Normalize {
                mean: vec![0.5],
                std: vec![0.0],
            }),
            "std must be finite and > 0",
        ),
    ];
    for (config, expected) in cases {
        let err = config.validate().expect_err(expected);
        assert!(
            err.starts_with(expected),
            "{err:?} should start with {expected:?}"
        );
    }
}

#[test]
fn defaults_are_valid_and_follow_simclr() {
    let gray = simclr_default(28, 1);
    let names: Vec<_> = gray.iter().map(PipelineConfig::name).collect();
    assert_eq!(
        names,
        ["random_resized_crop", "horizontal_flip", "color_jitter"]
    );
    let color = simclr_default(32, 3);
    assert_eq!(color.len(), 4);
    assert_eq!(
        color[3],
        PipelineConfig::RandomGrayscale(RandomGrayscale { p: 0.2 })
    );
    for c in gray.iter().chain(&color) {
        c.validate().expect("defaults are valid");
    }
    let PipelineConfig::ColorJitter(j) = &gray[2] else {
        panic!("third transform is the jitter");
    };
    assert_eq!(
        (j.p, j.brightness, j.contrast, j.saturation, j.hue),
        (0.8, 0.4, 0.4, 0.0, 0.0)
    );
    let PipelineConfig::RandomResizedCrop(c) = &color[0] else {
        panic!("first transform is the crop");
    };
    assert_eq!(
        (c.size, c.scale, c.ratio),
        (32, (0.08, 1.0), (0.75, 4.0 / 3.0))
    );
}

#[test]
fn recipe_syntax() {
    let configs = parse(
        r#"transforms = [
            { name = "random_resized_crop", size = 28, scale = [0.2, 1.0] },
            { name = "horizontal_flip" },
            { name = "color_jitter", brightness = 0.2, hue = 0.0 },
            { name = "random_grayscale", p = 0.1 },
            { name = "normalize", mean = [0.286], std = [0.353] },
        ]"#,
    )
    .expect("valid recipe");
    assert_eq!(
        configs,
        vec![
            PipelineConfig::RandomResizedCrop(RandomResizedCrop {
                scale: (0.2, 1.0),
                ..RandomResizedCrop::new(28)
            }),
            PipelineConfig::HorizontalFlip(HorizontalFlip::default()),
            PipelineConfig::ColorJitter(ColorJitter {
                brightness: 0.2,
                hue: 0.0,
                ..ColorJitter::default()
            }),
            PipelineConfig::RandomGrayscale(RandomGrayscale { p: 0.1 }),
            PipelineConfig::Normalize(Normalize {
                mean: vec![0.286],
                std: vec![0.353],
            }),
        ]
    );
    let pipeline = Pipeline::from_configs(&configs);
    assert_eq!(pipeline.len(), 5);
}

#[test]
fn recipe_errors() {
    let unknown_key = parse(r#"transforms = [{ name = "horizontal_flip", prob = 0.5 }]"#);
    assert!(unknown_key.expect_err("unknown key").contains("prob"));
    let unknown_name = parse(r#"transforms = [{ name = "vertical_flip" }]"#);
    assert!(unknown_name
        .expect_err("unknown name")
        .contains("vertical_flip"));
    let missing_size = parse(r#"transforms = [{ name = "random_resized_crop" }]"#);
    assert!(missing_size.expect_err("missing size").contains("size"));
}

#[test]
fn invalid_options_do_not_panic() {
    let configs = [
        PipelineConfig::RandomResizedCrop(RandomResizedCrop {
            size: 0,
            scale: (0.9, 0.1),
            ratio: (3.0, 0.2),
        }),
        PipelineConfig::ColorJitter(ColorJitter {
            p: 2.0,
            brightness: -1.0,
            contrast: 5.0,
            saturation: -3.0,
            hue: 0.9,
        }),
        PipelineConfig::Normalize(Normalize {
            mean: vec![],
            std: vec![],
        }),
    ];
    let pipeline = Pipeline::from_configs(&configs);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for channels in [1, 3] {
        let out = pipeline.apply(&noise(channels, 10, 10, 9), &mut rng);
        assert_eq!((out.height, out.width), (0, 0));
    }
}

#[test]
fn pipelines_are_shareable() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Pipeline>();
}
