//! Errors of the photo pipeline.
//!
//! Every variant ends up on the operator's screen on the bus, so the messages say what went
//! wrong *and* what to do about it, in plain words. The numbers are kept as fields so the UI
//! (or a translation) can render them differently.

use thiserror::Error;

/// Why a camera file could not be turned into an ID photo.
///
/// None of these is a bug in the caller: they are all properties of the file the camera (or a
/// USB stick, or a misbehaving phone) handed over, so they are returned, never panicked on.
#[derive(Debug, Error)]
pub enum PhotoError {
    /// The file is larger than [`Limits::max_input_bytes`](crate::Limits::max_input_bytes).
    ///
    /// Checked before anything else, so an absurd file costs nothing but its length.
    #[error(
        "the photo file is too large ({bytes} bytes, the limit is {max} bytes): \
         set the camera to a lower resolution and take the photo again"
    )]
    TooLarge {
        /// Size of the file that was offered.
        bytes: usize,
        /// The configured limit.
        max: usize,
    },

    /// The bytes are not a JPEG or PNG file. The string says what it looks like instead.
    #[error("this file is not a JPEG or PNG photo: {0}")]
    NotAnImage(String),

    /// The header announces more pixels than the limits allow.
    ///
    /// This is how a decompression bomb (a tiny file announcing a gigantic image) is refused:
    /// the size is read from the header and compared *before* any pixel buffer exists.
    #[error(
        "the photo has too many pixels ({width} x {height}, the limit is {max} pixels): \
         it was refused to protect the bus computer; use a lower camera resolution"
    )]
    TooManyPixels {
        /// Width announced by the file.
        width: u32,
        /// Height announced by the file.
        height: u32,
        /// The effective pixel limit (the smaller of the pixel and the memory limit).
        max: u64,
    },

    /// The file claims to be a JPEG or PNG but is damaged or incomplete.
    #[error("the photo file is damaged or incomplete ({0}): copy it again or retake the photo")]
    Decode(String),

    /// The ID photo could not be produced (for example an impossible target size).
    #[error("could not produce the ID photo: {0}")]
    Encode(String),

    /// Even the lowest acceptable JPEG quality does not fit the service's byte budget.
    ///
    /// Going lower than that would give a photo no officer can use, so the pipeline refuses
    /// instead of silently shipping mush. `smallest` is what the lowest quality produced.
    #[error(
        "the ID photo cannot fit the size limit of {max_bytes} bytes \
         (the smallest acceptable encoding is {smallest} bytes): the service's limit is too strict"
    )]
    BudgetUnreachable {
        /// The service's limit.
        max_bytes: usize,
        /// Size of the encoding at the lowest acceptable quality.
        smallest: usize,
    },
}

impl PhotoError {
    /// The operator's message in Bahasa Indonesia: what went wrong and what to do. The
    /// English [`Display`](std::fmt::Display) text carries the details for HQ and logs.
    pub fn message_id(&self) -> String {
        match self {
            PhotoError::TooLarge { bytes, max } => format!(
                "berkas foto terlalu besar ({bytes} byte, batas {max} byte): turunkan resolusi kamera lalu foto ulang"
            ),
            PhotoError::NotAnImage(_) => "berkas ini bukan foto JPEG atau PNG: pilih berkas foto dari kamera".into(),
            PhotoError::TooManyPixels { width, height, .. } => format!(
                "foto terlalu banyak piksel ({width} x {height}) dan ditolak demi keamanan komputer bus: turunkan resolusi kamera"
            ),
            PhotoError::Decode(_) => "berkas foto rusak atau tidak lengkap: salin ulang atau foto ulang".into(),
            PhotoError::Encode(_) => "pas foto tidak dapat dibuat dari berkas ini".into(),
            PhotoError::BudgetUnreachable { max_bytes, .. } => format!(
                "pas foto tidak muat dalam batas {max_bytes} byte layanan ini: batas layanan terlalu ketat"
            ),
        }
    }
}
