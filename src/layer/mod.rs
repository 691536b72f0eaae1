//! Layers: deterministic tar writing with hashing and compression in one pass, and
//! safe extraction with whiteouts. Nothing here knows about Dockerfiles.

pub mod extract;
pub mod live;
pub mod pgzip;
pub mod readahead;
pub mod tee;
pub mod writer;

pub use writer::{
    open_tar, tar_reader, BuiltLayer, Codec, LayerWriter, Meta, MEDIA_TYPE_GZIP, MEDIA_TYPE_ZSTD,
};
