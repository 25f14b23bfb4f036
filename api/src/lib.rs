//! Types that every part of Dispatch shares, and nothing else: the WebSocket
//! protocol between browser and agent (carried unchanged through the gateway),
//! the binary frame codec for terminal bytes, stable error codes, and the
//! shapes of the REST APIs. No I/O lives here.

pub mod approvals;
#[cfg(feature = "crd")]
pub mod crd;
pub mod error;
pub mod frame;
pub mod protocol;
pub mod rest;
pub mod session;
#[cfg(test)]
mod typescript;

pub use error::ErrorCode;
pub use frame::{Frame, FrameError, FrameKind};
pub use protocol::{ClientMessage, ServerMessage};
pub use session::{SessionId, SessionInfo, SessionKind};

/// Version of the wire protocol; the agent announces it in `hello`.
pub const PROTOCOL_VERSION: u32 = 1;

/// HTTP header that carries the agent's workspace token (`Bearer <token>`).
pub const AUTHORIZATION: &str = "authorization";
