//! The proxy-wasm ABI calls the adapter makes, declared here rather than taken from the
//! SDK's `hostcalls`: those panic on any status they do not expect (a refused header write, a
//! missing buffer), and a panic traps the VM. Here every refusal is a status for the caller
//! to log. Plain integers: the host's status need not be a known variant.

use proxy_wasm::types::{BufferType, MapType, MetricType};

/// A status other than OK from the host.
pub type Refused = u32;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(map_type: u32, return_map_data: *mut *mut u8, return_map_size: *mut usize) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_set_buffer_bytes(
        buffer_type: u32,
        start: usize,
        size: usize,
        buffer_data: *const u8,
        buffer_size: usize,
    ) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_define_metric(metric_type: u32, name_data: *const u8, name_size: usize, return_id: *mut u32) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    #[allow(clippy::too_many_arguments)]
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
}

/// Takes ownership of a buffer the host wrote through the SDK's exported allocator.
///
/// SAFETY: `data` must be null or a buffer of `size` bytes that the host allocated through
/// `proxy_on_memory_allocate` (a leaked `Vec<u8>` of capacity `size`), as the SDK assumes too.
unsafe fn owned(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() {
        Vec::new()
    } else {
        Vec::from_raw_parts(data, size, size)
    }
}

/// A header map, serialised as the host hands it over (`crate::header_map` reads it).
pub fn header_map(map: MapType) -> Result<Vec<u8>, Refused> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the out-pointers are live locals; see `owned` for the buffer.
    unsafe {
        match proxy_get_header_map_pairs(map as u32, &mut data, &mut size) {
            0 => Ok(owned(data, size)),
            status => Err(status),
        }
    }
}

/// Sets a header (replacing every value), or with `None` removes it.
pub fn set_header(map: MapType, name: &str, value: Option<&[u8]>) -> Result<(), Refused> {
    // SAFETY: every pointer is to a live buffer of the length passed with it; the host copies.
    let status = unsafe {
        match value {
            Some(value) => {
                proxy_replace_header_map_value(map as u32, name.as_ptr(), name.len(), value.as_ptr(), value.len())
            }
            None => proxy_remove_header_map_value(map as u32, name.as_ptr(), name.len()),
        }
    };
    if status == 0 {
        Ok(())
    } else {
        Err(status)
    }
}

/// The first `size` bytes of a buffered body.
pub fn body(buffer: BufferType, size: usize) -> Result<Vec<u8>, Refused> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut returned: usize = 0;
    // SAFETY: as in `header_map`.
    unsafe {
        match proxy_get_buffer_bytes(buffer as u32, 0, size, &mut data, &mut returned) {
            0 => Ok(owned(data, returned)),
            status => Err(status),
        }
    }
}

/// Replaces a whole buffered body (`old_size`: the length it has now, all of which goes).
pub fn set_body(buffer: BufferType, old_size: usize, body: &[u8]) -> Result<(), Refused> {
    // SAFETY: `body` is live for the call; the host copies it.
    let status = unsafe { proxy_set_buffer_bytes(buffer as u32, 0, old_size, body.as_ptr(), body.len()) };
    if status == 0 {
        Ok(())
    } else {
        Err(status)
    }
}

/// A property of the plugin or stream by its path: one segment (`plugin_root_id`), or several
/// joined by NUL (`connection\0uri_san_peer_certificate`), as the ABI takes them. A property
/// the host does not have is refused with status 1 (not found).
pub fn property(name: &str) -> Result<Vec<u8>, Refused> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: as in `header_map`.
    unsafe {
        match proxy_get_property(name.as_ptr(), name.len(), &mut data, &mut size) {
            0 => Ok(owned(data, size)),
            status => Err(status),
        }
    }
}

/// Answers the request locally. `grpc_status` -1 is an HTTP answer; `details` shows in the
/// access log as `%RESPONSE_CODE_DETAILS%`.
pub fn send_local_response(
    status: u32,
    details: &str,
    headers: &[u8],
    body: &[u8],
    grpc_status: i32,
) -> Result<(), Refused> {
    // SAFETY: every pointer is to a live buffer of the length passed with it; the host copies.
    let status = unsafe {
        proxy_send_local_response(
            status,
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            grpc_status,
        )
    };
    if status == 0 {
        Ok(())
    } else {
        Err(status)
    }
}

/// Defines a counter by its full name (the host prefixes `wasmcustom.`); its id.
pub fn define_counter(name: &str) -> Result<u32, Refused> {
    let mut id: u32 = 0;
    // SAFETY: `name` is live for the call (the host copies it); `id` is a live local.
    let status = unsafe { proxy_define_metric(MetricType::Counter as u32, name.as_ptr(), name.len(), &mut id) };
    if status == 0 {
        Ok(id)
    } else {
        Err(status)
    }
}

/// Adds `count` to a counter.
pub fn increment_counter(id: u32, count: u64) -> Result<(), Refused> {
    // SAFETY: plain integers.
    let status = unsafe { proxy_increment_metric(id, i64::try_from(count).unwrap_or(i64::MAX)) };
    if status == 0 {
        Ok(())
    } else {
        Err(status)
    }
}
