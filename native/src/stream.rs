//! What Envoy's per-stream pointer stands for. The header filter keeps nothing per stream, so its
//! pointer is its configuration's (no allocation per request); the body filter's is a
//! [`BodyStream`] of its own, told apart by its lowest bit (set: a `Box` is aligned to 8).

use crate::config::NativeConfig;
use meshver::filter::body::BodyExchange;
use std::ffi::c_void;

/// The body filter's state for one stream.
pub struct BodyStream {
    pub config: *const NativeConfig,
    /// Set once the request's headers showed body work to do.
    pub exchange: Option<BodyExchange>,
}

const BODY_TAG: usize = 1;

pub enum Stream<'a> {
    Header(&'a NativeConfig),
    Body(&'a NativeConfig, &'a mut BodyStream),
}

/// The pointer `filter_new` hands Envoy for a stream of `config`.
pub fn new(config: *const c_void) -> *const c_void {
    // SAFETY: the live configuration Envoy passes to filter_new.
    match unsafe { config.cast::<NativeConfig>().as_ref() } {
        Some(native) if native.body_filter => {
            let stream = Box::new(BodyStream { config: config.cast(), exchange: None });
            (Box::into_raw(stream) as usize | BODY_TAG) as *const c_void
        }
        _ => config,
    }
}

/// What a pointer `new` made stands for.
///
/// SAFETY: `pointer` must be one `new` made and `drop` has not freed, used by one hook at a time
/// (Envoy calls a stream's hooks one after the other, on its worker).
pub unsafe fn of<'a>(pointer: *const c_void) -> Option<Stream<'a>> {
    let address = pointer as usize;
    if address & BODY_TAG == 0 {
        return pointer.cast::<NativeConfig>().as_ref().map(Stream::Header);
    }
    let stream = ((address & !BODY_TAG) as *mut BodyStream).as_mut()?;
    let config = stream.config.as_ref()?;
    Some(Stream::Body(config, stream))
}

/// Frees what `new` allocated for a stream.
///
/// SAFETY: `pointer` must be one `new` made, freed once, after its last hook.
pub unsafe fn drop(pointer: *const c_void) {
    let address = pointer as usize;
    if address & BODY_TAG != 0 {
        std::mem::drop(Box::from_raw((address & !BODY_TAG) as *mut BodyStream));
    }
}
