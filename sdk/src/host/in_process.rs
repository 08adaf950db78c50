//! A connector compiled into the current binary, called through the plugin glue.

use std::sync::Arc;

use super::handler::{json_arg, sink, HostHandler};
use crate::error::ConnectorError;
use crate::protocol::{Catalog, ConnectorInfo, ReadRequest};

/// Calls a connector compiled into the current binary through exactly the same glue a
/// loaded plugin uses (JSON in, panics caught, logs forwarded), minus `dlopen`.
///
/// For connector tests and for measuring what the dynamic boundary costs.
#[derive(Debug)]
pub struct InProcess<C>(std::marker::PhantomData<C>);

impl<C: crate::Connector> InProcess<C> {
    /// `info` of `C`.
    pub fn info() -> Result<ConnectorInfo, ConnectorError> {
        let json = crate::export::info::<C>()
            .into_result()
            .map_err(ConnectorError::from)?;
        serde_json::from_str(json.as_str())
            .map_err(|e| ConnectorError::system(format!("info is not valid JSON: {e}")))
    }

    /// `check` of `C`.
    pub fn check(
        config: &serde_json::Value,
        handler: Arc<dyn HostHandler>,
    ) -> Result<(), ConnectorError> {
        let config = json_arg(config)?;
        crate::export::check::<C>(config.as_str().into(), sink(handler))
            .into_result()
            .map_err(ConnectorError::from)
    }

    /// `discover` of `C`.
    pub fn discover(
        config: &serde_json::Value,
        handler: Arc<dyn HostHandler>,
    ) -> Result<Catalog, ConnectorError> {
        let config = json_arg(config)?;
        let json = crate::export::discover::<C>(config.as_str().into(), sink(handler))
            .into_result()
            .map_err(ConnectorError::from)?;
        serde_json::from_str(json.as_str())
            .map_err(|e| ConnectorError::system(format!("catalog is not valid JSON: {e}")))
    }

    /// `read` of `C`.
    pub fn read(
        request: &ReadRequest,
        handler: Arc<dyn HostHandler>,
    ) -> Result<(), ConnectorError> {
        let request = json_arg(request)?;
        crate::export::read::<C>(request.as_str().into(), sink(handler))
            .into_result()
            .map_err(ConnectorError::from)
    }
}
