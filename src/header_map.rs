//! proxy-wasm's serialised header map, read in place.
//!
//! The host hands the whole request header map over as one buffer: a little-endian u32
//! count, then a (name length, value length) u32 pair per header, then each name and value
//! followed by a NUL. Reading it here as borrowed byte slices, instead of through the SDK's
//! `get_map_bytes`, saves an allocation per name and per value on every request, and cannot
//! panic: the SDK's reader indexes the buffer unchecked and unwraps each name as UTF-8.

/// One header as the host sent it: lower-case name and raw value, both bytes.
pub type Header<'a> = (&'a [u8], &'a [u8]);

/// The headers in `buffer`, in order; `None` when the buffer is not a well-formed map (the
/// caller then treats the request as having no headers rather than trusting part of it).
pub fn parse(buffer: &[u8]) -> Option<Vec<Header<'_>>> {
    if buffer.is_empty() {
        return Some(Vec::new());
    }
    let count = usize::try_from(read_u32(buffer, 0)?).ok()?;
    let mut data = count.checked_mul(8)?.checked_add(4)?;
    // Each header takes at least 10 bytes (two lengths, two NULs): bounds the allocation.
    let mut headers = Vec::with_capacity(count.min(buffer.len() / 10));
    for index in 0..count {
        let lengths = 4 + index * 8;
        let name_len = usize::try_from(read_u32(buffer, lengths)?).ok()?;
        let value_len = usize::try_from(read_u32(buffer, lengths + 4)?).ok()?;
        let name = buffer.get(data..data.checked_add(name_len)?)?;
        data = data.checked_add(name_len + 1)?;
        let value = buffer.get(data..data.checked_add(value_len)?)?;
        data = data.checked_add(value_len + 1)?;
        headers.push((name, value));
    }
    (data <= buffer.len()).then_some(headers)
}

/// The host's side of the format: what Envoy hands over. The native host builds it from Envoy's
/// header entries, the wasm host for a local answer's headers, the tests and benches for their maps.
pub fn serialise(headers: &[Header<'_>]) -> Vec<u8> {
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    // Sized once: the native host serialises every request's headers here.
    let size = 4 + headers.iter().map(|(name, value)| 10 + name.len() + value.len()).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend(count(headers.len()));
    for (name, value) in headers {
        out.extend(count(name.len()));
        out.extend(count(value.len()));
    }
    for (name, value) in headers {
        out.extend(*name);
        out.push(0);
        out.extend(*value);
        out.push(0);
    }
    out
}

fn read_u32(buffer: &[u8], at: usize) -> Option<u32> {
    let bytes = buffer.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_host_writes() {
        let cases: &[&[(&[u8], &[u8])]] = &[
            &[],
            &[(b":path", b"/v2/register")],
            &[(b":path", b"/"), (b"x-api-version", b"\xff\xfe"), (b"\xc3\x28", b""), (b"x-api-version", b"2")],
        ];
        for headers in cases {
            assert_eq!(parse(&serialise(headers)).as_deref(), Some(*headers));
        }
        assert_eq!(parse(b""), Some(vec![]));
    }

    #[test]
    fn refuses_a_truncated_or_lying_buffer_without_panicking() {
        let good = serialise(&[(b"accept", b"application/json"), (b"x-api-version", b"2")]);
        for cut in 1..good.len() {
            assert_eq!(parse(&good[..cut]), None, "cut at {cut}");
        }
        let mut huge_count = good.clone();
        huge_count[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse(&huge_count), None);
        let mut huge_length = good.clone();
        huge_length[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse(&huge_length), None);
    }
}
