//! The glue behind [`crate::export_connector!`]: turns a [`crate::Connector`] into the
//! `extern "C"` functions of the root module.
#![allow(missing_docs)]

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};

use abi_stable::std_types::{RResult, RStr, RString};
use tracing::Instrument;

use crate::emitter::Emitter;
use crate::error::ConnectorError;
use crate::ffi::{FfiError, FfiResult, HostSinkBox};
use crate::logging;
use crate::protocol::{ConnectorInfo, ReadRequest, PROTOCOL_VERSION};
use crate::Connector;

/// The plugin's private runtime: one per loaded library, created on first use.
fn runtime() -> Result<&'static tokio::runtime::Runtime, ConnectorError> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let threads = std::env::var("TRIBUTARY_PLUGIN_THREADS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(2usize);
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads.max(1))
                .thread_name("tributary-plugin")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| ConnectorError::system(format!("cannot start the plugin runtime: {e}")))
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_string()
    }
}

/// Installs, once, a panic hook that reports panics through `tracing` (to the host's log)
/// instead of a raw stderr backtrace; the panic is still caught at the entry point and
/// returned as `Panic`. A loaded plugin has its own copy of std, hence its own hook, so
/// only the `export_connector!` entry points call this; in-process callers (tests,
/// benchmarks) keep their own hook.
pub fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let location = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            tracing::error!(
                location,
                "connector panicked: {}",
                panic_message(info.payload())
            );
        }));
    });
}

/// Runs `f`, turning a panic into an error of kind `Panic`.
pub fn guard<T>(f: impl FnOnce() -> Result<T, ConnectorError>) -> FfiResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => RResult::ROk(v),
        Ok(Err(e)) => RResult::RErr(e.into()),
        Err(payload) => RResult::RErr(FfiError {
            kind: crate::ErrorKind::Panic.to_u8(),
            message: format!("connector panicked: {}", panic_message(payload.as_ref())).into(),
        }),
    }
}

/// Runs an async entry point on the plugin runtime with logs routed to `host`.
fn run_call<T, F, Fut>(host: Arc<HostSinkBox>, f: F) -> Result<T, ConnectorError>
where
    F: FnOnce(Arc<HostSinkBox>) -> Fut,
    Fut: Future<Output = Result<T, ConnectorError>>,
{
    let rt = runtime()?;
    let call = logging::register(host.clone());
    let span = tracing::info_span!("tributary", tributary_call = call.id);
    rt.block_on(f(host).instrument(span))
}

fn parse_json<T: serde::de::DeserializeOwned>(
    what: &str,
    s: RStr<'_>,
) -> Result<T, ConnectorError> {
    serde_json::from_str(s.as_str())
        .map_err(|e| ConnectorError::config(format!("{what} is not valid: {e}")))
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<RString, ConnectorError> {
    serde_json::to_string(v)
        .map(RString::from)
        .map_err(|e| ConnectorError::system(format!("cannot serialize: {e}")))
}

pub fn info<C: Connector>() -> FfiResult<RString> {
    guard(|| {
        let mut info: ConnectorInfo = C::default().info();
        info.sdk_version = crate::SDK_VERSION.to_string();
        info.protocol_version = PROTOCOL_VERSION;
        to_json(&info)
    })
}

pub fn spec<C: Connector>() -> FfiResult<RString> {
    guard(|| to_json(&C::default().spec()))
}

pub fn check<C: Connector>(config: RStr<'_>, host: HostSinkBox) -> FfiResult<()> {
    guard(|| {
        let config = parse_json("config", config)?;
        run_call(Arc::new(host), |host| async move {
            C::default().check(config, Emitter::new(host)).await
        })
    })
}

pub fn discover<C: Connector>(config: RStr<'_>, host: HostSinkBox) -> FfiResult<RString> {
    guard(|| {
        let config = parse_json("config", config)?;
        let catalog = run_call(Arc::new(host), |host| async move {
            C::default().discover(config, Emitter::new(host)).await
        })?;
        to_json(&catalog)
    })
}

pub fn read<C: Connector>(request: RStr<'_>, host: HostSinkBox) -> FfiResult<()> {
    guard(|| {
        let request: ReadRequest = parse_json("read request", request)?;
        run_call(Arc::new(host), |host| async move {
            C::default().read(request, Emitter::new(host)).await
        })
    })
}

/// Exports `$connector` (a type implementing [`Connector`] + `Default`) as a Tributary
/// plugin. Use it once, at the crate root of a `cdylib`.
///
/// ```ignore
/// tributary_sdk::export_connector!(MyConnector);
/// ```
#[macro_export]
macro_rules! export_connector {
    ($connector:ty) => {
        #[doc(hidden)]
        #[allow(unsafe_code, non_local_definitions, missing_docs)]
        pub mod __tributary_export {
            use super::*;
            use $crate::__private::abi_stable::{
                library::{
                    __call_root_module_loader, CheckTypeLayout, LibHeader, RootModuleResult,
                },
                prefix_type::PrefixTypeTrait,
                std_types::{RStr, RString},
            };
            use $crate::__private::ffi::{ConnectorMod, ConnectorModRef, FfiResult, HostSinkBox};

            extern "C" fn info() -> FfiResult<RString> {
                $crate::__private::export::info::<$connector>()
            }
            extern "C" fn spec() -> FfiResult<RString> {
                $crate::__private::export::spec::<$connector>()
            }
            extern "C" fn check(config: RStr<'_>, host: HostSinkBox) -> FfiResult<()> {
                $crate::__private::export::install_panic_hook();
                $crate::__private::export::check::<$connector>(config, host)
            }
            extern "C" fn discover(config: RStr<'_>, host: HostSinkBox) -> FfiResult<RString> {
                $crate::__private::export::install_panic_hook();
                $crate::__private::export::discover::<$connector>(config, host)
            }
            extern "C" fn read(request: RStr<'_>, host: HostSinkBox) -> FfiResult<()> {
                $crate::__private::export::install_panic_hook();
                $crate::__private::export::read::<$connector>(request, host)
            }

            fn get_library() -> ConnectorModRef {
                ConnectorMod {
                    info,
                    spec,
                    check,
                    discover,
                    read,
                }
                .leak_into_prefix()
            }

            // What abi_stable's `#[export_root_module]` expands to, spelled with paths
            // through this SDK so plugin crates need no direct abi_stable dependency.
            // The symbol name is abi_stable 0.11's loader name (checked by a unit test).
            #[no_mangle]
            #[allow(non_upper_case_globals)]
            pub static _1as_0lib_1header_0root_bmodule_bloader: LibHeader = {
                extern "C" fn erased() -> RootModuleResult {
                    __call_root_module_loader(get_library)
                }
                unsafe {
                    LibHeader::from_constructor::<ConnectorModRef>(erased, CheckTypeLayout::Yes)
                }
            };

            /// `name version` of this plugin, readable without the root module.
            #[no_mangle]
            pub extern "C" fn tributary_plugin_id() -> *const u8 {
                concat!(env!("CARGO_PKG_NAME"), " ", env!("CARGO_PKG_VERSION"), "\0").as_ptr()
            }
        }
    };
}
