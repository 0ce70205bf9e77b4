//! bff-partner
