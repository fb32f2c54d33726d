//! The offloads' tests: byte fixtures for segmenting (the crafted
//! `gso_size` values of issue 10 included) and coalescing, and property
//! tests that no input panics either and that the two undo each other.

mod coalesce;
mod proptests;
mod segment;
