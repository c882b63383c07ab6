//! Example programs of the `libdlm` crate; see the files next to this one.
