//! bff-mobile
