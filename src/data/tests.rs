//! Table-driven tests of the data half.
