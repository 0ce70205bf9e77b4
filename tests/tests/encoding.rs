//! What the compression tests of every BFF share: an answer as it was
//! sent, and its body decoded.

use std::io::Read as _;

/// `response`'s `Content-Encoding` (empty when there is none) and its body
/// as sent.
pub(crate) async fn as_sent(response: reqwest::Response) -> (String, Vec<u8>) {
    let coding = response
        .headers()
        .get("content-encoding")
        .map(|value| value.to_str().expect("ASCII").to_owned())
        .unwrap_or_default();
    (coding, response.bytes().await.expect("read").to_vec())
}

/// `body` decoded from `coding` (`br` or `gzip`), checking it is valid.
pub(crate) fn decoded(coding: &str, body: &[u8]) -> Vec<u8> {
    let mut decoded = Vec::new();
    match coding {
        "br" => brotli::Decompressor::new(body, 4096)
            .read_to_end(&mut decoded)
            .expect("valid br"),
        "gzip" => flate2::read::GzDecoder::new(body)
            .read_to_end(&mut decoded)
            .expect("valid gzip"),
        other => panic!("no decoder for {other:?}"),
    };
    decoded
}
