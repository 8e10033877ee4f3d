//! An in-memory [`Host`]: a request's headers in, and a record of everything the filter did
//! to them out, for native tests of the whole request path.

use super::{BodyHost, Host};
use crate::header_map;
use crate::metrics::{Family, Series};
use crate::problem::Answer;

#[derive(Debug, Default)]
pub struct FakeHost {
    /// The request headers as they stand (names lower-case), pseudo-headers included.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Header names removed, in order.
    pub removed: Vec<String>,
    /// Headers set, in order.
    pub set: Vec<(String, Vec<u8>)>,
    pub answer: Option<Answer>,
    /// Counters counted, in order.
    pub counted: Vec<Series>,
    pub now: i64,
    /// When set, the host refuses the header map.
    pub refuse_headers: bool,
    /// When set, the host hands over these bytes as the header map.
    pub raw_header_map: Option<Vec<u8>>,
    /// The request body as buffered, and as the body filter left it.
    pub request_body: Vec<u8>,
    /// The response's headers and body (the body filter's side).
    pub response_headers: Vec<(String, Vec<u8>)>,
    pub response_body: Vec<u8>,
    /// The connection's mTLS peer ID (the client certificate's URI SAN); none for plaintext.
    pub peer_uri_san: Option<Vec<u8>>,
    /// How often the filter asked for the peer.
    pub peer_reads: usize,
}

impl FakeHost {
    pub fn new(headers: &[(&str, &[u8])]) -> Self {
        FakeHost { headers: headers.iter().map(|(n, v)| ((*n).to_owned(), v.to_vec())).collect(), ..Self::default() }
    }

    /// The first value of a header as it stands after the filter ran, as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    /// The filter's own headers (`x-meshver-`) as they stand, values as text.
    pub fn owned_headers(&self) -> Vec<(String, String)> {
        self.headers
            .iter()
            .filter(|(name, _)| name.starts_with(crate::config::OWNED_HEADER_PREFIX))
            .map(|(name, value)| (name.clone(), String::from_utf8_lossy(value).into_owned()))
            .collect()
    }

    /// The request as the next listener receives it: a `forward_to` listener passes every
    /// header on as the filter left it, and the clock is the same proxy's.
    pub fn passed_on(&self) -> FakeHost {
        FakeHost { headers: self.headers.clone(), now: self.now, ..Self::default() }
    }

    /// The same, over an mTLS connection whose client certificate names `peer`.
    pub fn passed_on_by(&self, peer: &str) -> FakeHost {
        FakeHost { peer_uri_san: Some(peer.as_bytes().to_vec()), ..self.passed_on() }
    }

    /// What the request counted under in `meshver_requests_total`, as `<service>.<outcome>`.
    pub fn counted_requests(&self, catalog: &crate::config::Catalog) -> Vec<String> {
        use crate::metrics::Label;
        let requests = self.counted.iter().filter(|s| s.family == Family::Requests);
        requests.map(|s| format!("{}.{}", s.value(catalog, Label::Service), s.value(catalog, Label::Outcome))).collect()
    }

    /// A header (or for a gRPC answer, metadata) of the answer the filter sent.
    pub fn answer_header(&self, name: &str) -> Option<&str> {
        self.answer.as_ref()?.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }
}

impl Host for FakeHost {
    fn request_header_map(&mut self) -> Option<Vec<u8>> {
        if self.refuse_headers {
            return None;
        }
        if let Some(raw) = &self.raw_header_map {
            return Some(raw.clone());
        }
        let pairs: Vec<(&[u8], &[u8])> = self.headers.iter().map(|(n, v)| (n.as_bytes(), v.as_slice())).collect();
        Some(header_map::serialise(&pairs))
    }

    fn set_request_header(&mut self, name: &str, value: Option<&[u8]>) {
        self.headers.retain(|(n, _)| n != name);
        match value {
            Some(value) => {
                self.headers.push((name.to_owned(), value.to_vec()));
                self.set.push((name.to_owned(), value.to_vec()));
            }
            None => self.removed.push(name.to_owned()),
        }
    }

    fn send_answer(&mut self, answer: &Answer) {
        assert!(self.answer.is_none(), "answered twice");
        self.answer = Some(answer.clone());
    }

    fn now(&self) -> i64 {
        self.now
    }

    fn peer_uri_san(&mut self) -> Option<Vec<u8>> {
        self.peer_reads += 1;
        self.peer_uri_san.clone()
    }

    fn count(&mut self, series: Series) {
        self.counted.push(series);
    }

    fn debug(&self, _message: std::fmt::Arguments<'_>) {}
}

impl BodyHost for FakeHost {
    fn request_body(&mut self, size: usize) -> Option<Vec<u8>> {
        // Like Envoy: a size past the end reads what is there.
        Some(self.request_body.get(..size).unwrap_or(&self.request_body).to_vec())
    }

    fn set_request_body(&mut self, old_size: usize, body: &[u8]) {
        assert_eq!(old_size, self.request_body.len(), "the whole body is replaced");
        self.request_body = body.to_vec();
    }

    fn response_header_map(&mut self) -> Option<Vec<u8>> {
        let pairs: Vec<(&[u8], &[u8])> =
            self.response_headers.iter().map(|(n, v)| (n.as_bytes(), v.as_slice())).collect();
        Some(header_map::serialise(&pairs))
    }

    fn set_response_header(&mut self, name: &str, value: Option<&[u8]>) {
        self.response_headers.retain(|(n, _)| n != name);
        if let Some(value) = value {
            self.response_headers.push((name.to_owned(), value.to_vec()));
        }
    }

    fn response_body(&mut self, size: usize) -> Option<Vec<u8>> {
        self.response_body.get(..size).map(<[u8]>::to_vec)
    }

    fn set_response_body(&mut self, old_size: usize, body: &[u8]) {
        assert_eq!(old_size, self.response_body.len(), "the whole body is replaced");
        self.response_body = body.to_vec();
    }
}
