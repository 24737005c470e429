//! Why a domain value inside a decoded message was refused.
//!
//! Domain types validate themselves during deserialization (`#[serde(try_from)]`), but
//! postcard's error type drops the message of a custom error: a NIK with a letter in it
//! would come out as "Serde Deserialization Error". The `TryFrom` impls serde calls note
//! their error here, and [`crate::wire`]'s decoder reads it back, so a quarantine entry
//! says what was wrong. Thread-local, cleared before every decode: a decode runs on one
//! thread from start to end.

use std::cell::RefCell;
use std::fmt::Display;

thread_local! {
    static LAST: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Notes `e` as the latest refusal on this thread and returns it.
pub(crate) fn note<E: Display>(e: E) -> E {
    LAST.with(|l| *l.borrow_mut() = Some(e.to_string()));
    e
}

/// Takes the latest refusal noted on this thread, if any.
pub(crate) fn take() -> Option<String> {
    LAST.with(|l| l.borrow_mut().take())
}
