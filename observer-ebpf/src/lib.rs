#![no_std]
// This file exists so that observer-user can name this crate as a build dependency.
