//! The Lambda edge: the runtime adapter, the route's facts, the handler ([`App`]) that
//! walks a request's whole path, caller binding, and the one error table with its
//! problem responses.

pub mod api_error;
pub mod app;
pub mod caller;
pub mod problem;
pub mod route;
pub mod runtime;

pub use api_error::ApiError;
pub use app::App;
