//! The `#[repr(C)]` surface between host and plugin. Everything `abi_stable` lives here.
//!
//! Connector authors never use these types; [`crate::export_connector!`] and
//! [`crate::host`] wrap them. They are public only because the macro expands in the
//! plugin crate.
#![allow(missing_docs, non_camel_case_types, unsafe_code, non_local_definitions)]

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RBox, ROption, RResult, RStr, RString, RVec},
    StableAbi,
};

/// Error crossing the boundary: an [`crate::ErrorKind`] as a byte plus the message.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiError {
    pub kind: u8,
    pub message: RString,
}

impl From<crate::ConnectorError> for FfiError {
    fn from(e: crate::ConnectorError) -> Self {
        FfiError {
            kind: e.kind.to_u8(),
            message: e.message.into(),
        }
    }
}

impl From<FfiError> for crate::ConnectorError {
    fn from(e: FfiError) -> Self {
        crate::ConnectorError::new(crate::ErrorKind::from_u8(e.kind), e.message.into_string())
    }
}

pub type FfiResult<T> = RResult<T, FfiError>;

/// One record; mirrors [`crate::Record`].
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiRecord {
    pub pk: RString,
    pub cursor: ROption<RString>,
    pub deleted: bool,
    pub data: RString,
}

/// Callbacks the host gives the plugin for one call.
///
/// Appending methods after the last one is a compatible change (`last_prefix_field`).
#[sabi_trait]
pub trait HostSink: Send + Sync {
    /// A batch of records of `stream`. Blocks while the host's queue is full. An error
    /// means the host will not take more (cancelled, destination failed).
    fn records(&self, stream: RStr<'_>, batch: RVec<FfiRecord>) -> FfiResult<()>;
    /// A state checkpoint for `stream` (JSON), covering every record emitted before it.
    fn state(&self, stream: RStr<'_>, state: RStr<'_>) -> FfiResult<()>;
    /// A CONTROL message (JSON); returns once the host has acted on it.
    fn control(&self, message: RStr<'_>) -> FfiResult<()>;
    /// A STREAM_STATUS message (JSON).
    fn stream_status(&self, stream: RStr<'_>, status: RStr<'_>);
    /// A log event.
    fn log(&self, level: u8, target: RStr<'_>, message: RStr<'_>);
    /// Most verbose level the host wants forwarded.
    fn log_level(&self) -> u8;
    /// Whether the host asked the plugin to stop.
    #[sabi(last_prefix_field)]
    fn is_cancelled(&self) -> bool;
    /// Primary keys (as text) of `stream` that are live at the source, inside an open
    /// snapshot. Blocks like `records`.
    fn keys(&self, stream: RStr<'_>, keys: RVec<RString>) -> FfiResult<()>;
    /// A snapshot event of `stream` (a [`crate::SnapshotEvent`] as JSON), ordered with
    /// the records and keys around it.
    fn snapshot(&self, stream: RStr<'_>, event: RStr<'_>) -> FfiResult<()>;
}

/// The host sink as a trait object owned by the plugin for the duration of a call.
pub type HostSinkBox = HostSink_TO<'static, RBox<()>>;

/// The root module every Tributary plugin exports.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = ConnectorModRef)))]
#[sabi(missing_field(panic))]
pub struct ConnectorMod {
    /// [`crate::ConnectorInfo`] as JSON.
    pub info: extern "C" fn() -> FfiResult<RString>,
    /// The config JSON Schema as JSON.
    pub spec: extern "C" fn() -> FfiResult<RString>,
    /// Check the config (JSON).
    pub check: extern "C" fn(config: RStr<'_>, host: HostSinkBox) -> FfiResult<()>,
    /// Discover the catalog; returns [`crate::Catalog`] as JSON.
    pub discover: extern "C" fn(config: RStr<'_>, host: HostSinkBox) -> FfiResult<RString>,
    /// Read, with a [`crate::ReadRequest`] as JSON.
    #[sabi(last_prefix_field)]
    pub read: extern "C" fn(request: RStr<'_>, host: HostSinkBox) -> FfiResult<()>,
}

impl RootModule for ConnectorModRef {
    declare_root_module_statics! {ConnectorModRef}
    const BASE_NAME: &'static str = "tributary_connector";
    const NAME: &'static str = "tributary connector";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// Name of the plain C symbol each plugin exports with its `name version` (NUL-terminated),
/// readable even when the root module's layout is incompatible.
pub const PLUGIN_ID_SYMBOL: &[u8] = b"tributary_plugin_id\0";

/// abi_stable 0.11's root-module loader symbol, which `export_connector!` defines.
pub const ROOT_MODULE_LOADER_SYMBOL: &str = "_1as_0lib_1header_0root_bmodule_bloader";

#[cfg(test)]
mod tests {
    /// The export macro hard-codes abi_stable's loader symbol; this keeps them in step.
    #[test]
    fn loader_symbol_matches_abi_stable() {
        assert_eq!(
            abi_stable::library::ROOT_MODULE_LOADER_NAME,
            super::ROOT_MODULE_LOADER_SYMBOL
        );
    }
}
