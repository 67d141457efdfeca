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

/// The new transforms with their probability forced to 1, and to 0.
fn new_transforms(p: f32) -> Vec<PipelineConfig> {
    vec![
        PipelineConfig::Rotation(RandomRotation {
            p,
            ..RandomRotation::default()
        }),
        PipelineConfig::GaussianBlur(GaussianBlur {
            p,
            ..GaussianBlur::default()
        }),
        PipelineConfig::Solarize(RandomSolarize {
            p,
            ..RandomSolarize::default()
        }),
        PipelineConfig::GaussianNoise(GaussianNoise {
            p,
            ..GaussianNoise::default()
        }),
        PipelineConfig::Cutout(Cutout {
            p,
            ..Cutout::default()
        }),
    ]
}

#[test]
fn new_transforms_are_reproducible_and_keep_the_shape() {
    for config in new_transforms(1.0) {
        config.validate().expect("defaults are valid");
        let t = config.build();
        for (c, h, w) in [(1, 28, 28), (3, 32, 24)] {
            let img = noise(c, h, w, 21);
            let draw = |seed| {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                (0..4).map(|_| t.apply(&img, &mut rng)).collect::<Vec<_>>()
            };
            let a = draw(3);
            assert_eq!(a, draw(3), "{}", config.name());
            // Solarizing with p = 1 has nothing random left.
            if config.name() != "solarize" {
                assert_ne!(a, draw(4), "{} ignores the seed", config.name());
            }
            for out in &a {
                assert_eq!(
                    (out.channels, out.height, out.width),
                    (c, h, w),
                    "{}",
                    config.name()
                );
                assert_ne!(out, &img, "{} with p = 1 changed nothing", config.name());
            }
        }
    }
}

#[test]
fn new_transforms_with_p_zero_are_the_identity() {
    let img = noise(3, 12, 10, 22);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for config in new_transforms(0.0) {
        let t = config.build();
        for _ in 0..5 {
            assert_eq!(t.apply(&img, &mut rng), img, "{}", config.name());
        }
    }
}

#[test]
fn solarize_inverts_exactly_the_pixels_above_the_threshold() {
    let img = noise(3, 9, 9, 23);
    let s = RandomSolarize {
        threshold: 0.3,
        p: 1.0,
    };
    let out = s.apply(&img, &mut ChaCha8Rng::seed_from_u64(0));
    let mut inverted = 0;
    for (v, o) in img.data.iter().zip(&out.data) {
        if *v >= 0.3 {
            assert_eq!(*o, 1.0 - v);
            inverted += 1;
        } else {
            assert_eq!(o, v);
        }
    }
    assert!(inverted > 0 && inverted < img.data.len());
    // The default solarizes about a fifth of the time.
    let d = RandomSolarize::default();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let changed = (0..1000).filter(|_| d.apply(&img, &mut rng) != img).count();
    assert!((150..250).contains(&changed), "{changed}");
}

fn mean(v: &[f32]) -> f32 {
    v.iter().sum::<f32>() / v.len() as f32
}

fn variance(v: &[f32]) -> f32 {
    let m = mean(v);
    v.iter().map(|x| (x - m) * (x - m)).sum::<f32>() / v.len() as f32
}

#[test]
fn blur_keeps_constants_and_smooths_noise() {
    let blur = GaussianBlur {
        p: 1.0,
        sigma: (1.5, 2.0),
        kernel_size: Some(7),
        ..GaussianBlur::default()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let flat = Image::new(2, 10, 13, vec![0.37; 260]).expect("260 values");
    let out = blur.apply(&flat, &mut rng);
    assert!(out.data.iter().all(|v| (v - 0.37).abs() < 1e-5));
    let img = noise(1, 32, 32, 24);
    let out = blur.apply(&img, &mut rng);
    assert!((mean(&out.data) - mean(&img.data)).abs() < 0.01);
    assert!(variance(&out.data) < 0.2 * variance(&img.data));
    // SimCLR's kernel is 10% of the side: 3 taps on 32 pixels, so an
    // impulse spreads to its 3 x 3 neighbourhood only.
    let mut dot = Image::zeros(1, 32, 32);
    dot.data[16 * 32 + 16] = 1.0;
    let out = GaussianBlur {
        p: 1.0,
        ..GaussianBlur::default()
    }
    .apply(&dot, &mut rng);
    let touched = out.data.iter().filter(|&&v| v > 0.0).count();
    assert!((1..=9).contains(&touched), "{touched}");
    assert!((out.data.iter().sum::<f32>() - 1.0).abs() < 1e-5);
}

#[test]
fn rotation_by_zero_and_by_a_quarter_turn() {
    let img = noise(2, 7, 7, 25);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let zero = RandomRotation {
        degrees: 0.0,
        p: 1.0,
        ..RandomRotation::default()
    };
    assert_eq!(zero.apply(&img, &mut rng), img);
    // A draw is random, so rotate by exactly 90 degrees directly.
    let out = rotation::rotate(&img, 90.0, 0.0);
    let n = 7;
    for c in 0..2 {
        for i in 0..n {
            for j in 0..n {
                // Counter-clockwise quarter turn = transpose, then flip
                // upside down: out[i][j] = in[j][n - 1 - i].
                let expected = img.at(c, j, n - 1 - i);
                assert!((out.at(c, i, j) - expected).abs() < 1e-5, "({c}, {i}, {j})");
            }
        }
    }
    // Four quarter turns give the image back; a turn by 45 degrees fills
    // the corners.
    let back = (0..4).fold(img.clone(), |x, _| rotation::rotate(&x, 90.0, 0.0));
    assert!(back
        .data
        .iter()
        .zip(&img.data)
        .all(|(a, b)| (a - b).abs() < 1e-5));
    let ones = Image::new(1, 9, 9, vec![1.0; 81]).expect("81 values");
    let tilted = rotation::rotate(&ones, 45.0, 0.25);
    assert!((tilted.at(0, 0, 0) - 0.25).abs() < 1e-6);
    assert!((tilted.at(0, 4, 4) - 1.0).abs() < 1e-6);
}

#[test]
fn cutout_zeroes_the_expected_number_of_pixels() {
    let ones = Image::new(3, 12, 10, vec![1.0; 360]).expect("360 values");
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let zeros = |img: &Image| img.data.iter().filter(|&&v| v == 0.0).count();
    let inside = Cutout {
        size: Some(4),
        inside: true,
        ..Cutout::default()
    };
    for _ in 0..20 {
        let out = inside.apply(&ones, &mut rng);
        assert_eq!(zeros(&out), 3 * 16);
        // Every channel loses the same pixels.
        assert_eq!(out.plane(0), out.plane(2));
    }
    // The paper's clipped holes: fraction 0.5 of 10 = 5 pixels a side, at
    // most 25 per channel, at least a 3 x 3 corner.
    let clipped = Cutout::default();
    let mut sizes = std::collections::BTreeSet::new();
    for _ in 0..200 {
        let z = zeros(&clipped.apply(&ones, &mut rng));
        assert!(z % 3 == 0 && (3 * 9..=3 * 25).contains(&z), "{z}");
        sizes.insert(z);
    }
    assert!(sizes.contains(&(3 * 25)) && sizes.len() > 1);
    // Several holes: at least one hole's worth, at most all of them.
    let many = Cutout {
        holes: 3,
        size: Some(3),
        inside: true,
        ..Cutout::default()
    };
    for _ in 0..20 {
        let z = zeros(&many.apply(&ones, &mut rng));
        assert!((27..=81).contains(&z), "{z}");
    }
}

#[test]
fn gaussian_noise_has_the_given_spread() {
    let img = Image::new(1, 64, 64, vec![0.5; 4096]).expect("4096 values");
    let n = GaussianNoise {
        std: 0.05,
        p: 1.0,
        clamp: false,
    };
    let out = n.apply(&img, &mut ChaCha8Rng::seed_from_u64(5));
    let d: Vec<f32> = out.data.iter().map(|v| v - 0.5).collect();
    assert!(mean(&d).abs() < 0.005, "{}", mean(&d));
    assert!((variance(&d).sqrt() - 0.05).abs() < 0.005);
    let clamped = GaussianNoise {
        std: 2.0,
        p: 1.0,
        clamp: true,
    };
    assert!(in_unit_range(
        &clamped.apply(&img, &mut ChaCha8Rng::seed_from_u64(6))
    ));
}

#[test]
fn new_transforms_validate_and_parse() {
    let cases: Vec<(PipelineConfig, &str)> = vec![
        (
            PipelineConfig::Rotation(RandomRotation {
                degrees: -1.0,
                ..RandomRotation::default()
            }),
            "degrees must be a finite number >= 0",
        ),
        (
            PipelineConfig::GaussianBlur(GaussianBlur {
                sigma: (2.0, 0.1),
                ..GaussianBlur::default()
            }),
            "sigma minimum 2 is larger",
        ),
        (
            PipelineConfig::GaussianBlur(GaussianBlur {
                kernel_size: Some(4),
                ..GaussianBlur::default()
            }),
            "kernel_size must be odd",
        ),
        (
            PipelineConfig::Solarize(RandomSolarize {
                p: 1.2,
                ..RandomSolarize::default()
            }),
            "p must be a probability",
        ),
        (
            PipelineConfig::GaussianNoise(GaussianNoise {
                std: f32::INFINITY,
                ..GaussianNoise::default()
            }),
            "std must be a finite number >= 0",
        ),
        (
            PipelineConfig::Cutout(Cutout {
                holes: 0,
                ..Cutout::default()
            }),
            "holes must be at least 1",
        ),
        (
            PipelineConfig::Cutout(Cutout {
                fraction: 1.5,
                ..Cutout::default()
            }),
            "fraction must lie in (0, 1]",
        ),
    ];
    for (config, expected) in cases {
        let err = config.validate().expect_err(expected);
        assert!(err.starts_with(expected), "{err:?} vs {expected:?}");
    }
    let configs = parse(
        r#"transforms = [
            { name = "rotation", degrees = 10 },
            { name = "gaussian_blur", p = 1.0 },
            { name = "solarize" },
            { name = "gaussian_noise", std = 0.2 },
            { name = "cutout", holes = 2, size = 8 },
        ]"#,
    )
    .expect("valid recipe");
    assert_eq!(
        configs.iter().map(PipelineConfig::name).collect::<Vec<_>>(),
        [
            "rotation",
            "gaussian_blur",
            "solarize",
            "gaussian_noise",
            "cutout"
        ]
    );
    assert_eq!(
        configs[2],
        PipelineConfig::Solarize(RandomSolarize {
            threshold: 0.5,
            p: 0.2
        })
    );
    assert_eq!(
        configs[4],
        PipelineConfig::Cutout(Cutout {
            holes: 2,
            size: Some(8),
            ..Cutout::default()
        })
    );
    let err =
        parse(r#"transforms = [{ name = "solarize", thresh = 0.5 }]"#).expect_err("unknown key");
    assert!(err.contains("thresh"), "{err}");
}
