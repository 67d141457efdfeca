//! The core's error type.

/// Everything that can go wrong in parallax-core. Messages are lowercase and
/// name the key, file or component involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A recipe value is missing, unknown or of the wrong type.
    #[error("recipe: {0}")]
    Recipe(String),
    /// A component name that is not registered.
    #[error("unknown {kind} `{name}`; available: {available}")]
    UnknownComponent {
        kind: &'static str,
        name: String,
        available: String,
    },
    /// Two registrations with the same name.
    #[error("duplicate {kind} `{name}` registered by {first} and {second}")]
    DuplicateComponent {
        kind: &'static str,
        name: String,
        first: String,
        second: String,
    },
    /// A component's configuration is invalid (value out of range, ...).
    #[error("invalid {component}: {message}")]
    Invalid { component: String, message: String },
    /// Shapes or inputs that do not fit together.
    #[error("{0}")]
    Shape(String),
    /// A device specification that is malformed or cannot be used here.
    #[error("device {0}")]
    Device(String),
    /// A data file that cannot be read or decoded.
    #[error("data: {0}")]
    Data(String),
    /// A checkpoint that cannot be read or written.
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: String, message: String },
    /// Training diverged.
    #[error("{0}")]
    Diverged(String),
    /// An error from Candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// An I/O error, with the path it concerns.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// An `Invalid` error for `component` with `message`.
    pub fn invalid(component: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid {
            component: component.into(),
            message: message.into(),
        }
    }

    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

/// The core's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
