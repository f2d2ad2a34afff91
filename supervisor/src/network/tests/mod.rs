//! Root end-to-end tests with the real plugins.
