//! Parallax text plugin: tokenizers (the `tokenizers` crate), a trainable
//! BERT encoder that loads and saves Hugging Face's layout (from a folder or
//! the Hub), sentence, triple and labelled-sentence data sources, the
//! `triples` view generator for supervised SimCSE, and the Lee, STS and
//! linear-probe evaluators. The SimCSE method itself is generic and lives
//! in parallax-core (`[method] name = "simcse"`).

pub mod bert;
pub mod encoder;
pub mod eval;
pub mod hub;
pub mod sources;
pub mod tokenizer;
pub mod views;
