//! Errors of the graph readers: each names the file (and the line, for
//! text files).

/// What went wrong reading a graph.
#[derive(Debug, thiserror::Error)]
pub enum GraphDataError {
    /// The file could not be read.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A binary file's content is not what the layout says.
    #[error("{file}: {message}")]
    Format {
        /// The file.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// A line of a text file is malformed.
    #[error("{file}:{line}: {message}")]
    Line {
        /// The file.
        file: String,
        /// The line number (from 1).
        line: usize,
        /// What is wrong.
        message: String,
    },
}

impl From<GraphDataError> for parallax_core::Error {
    fn from(e: GraphDataError) -> Self {
        parallax_core::Error::Data(e.to_string())
    }
}
