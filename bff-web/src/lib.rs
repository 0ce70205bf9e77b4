//! bff-web
