//! The library half of the `sekisho` binary: what other programs of the project build on
//! without starting a node — today the configuration (the fuzz targets parse and resolve it
//! as `serve` does).
#![forbid(unsafe_code)]

pub mod config;
pub mod effective;
