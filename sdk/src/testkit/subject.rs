//! The connector under test: a loaded plugin library or a connector compiled into the test.

use std::marker::PhantomData;
use std::sync::Arc;

use serde_json::Value;

use crate::error::ConnectorError;
use crate::host::{HostHandler, InProcess, Plugin};
use crate::protocol::{Catalog, ReadRequest};
use crate::Connector;

/// What the kit calls. Every method blocks until the connector returns; the kit calls
/// each from a thread of its own, so that a connector that never returns costs a bounded
/// wait instead of the test.
pub trait Subject: Send + Sync + 'static {
    /// The connector's name, for the report.
    fn name(&self) -> String;
    /// `spec`.
    fn spec(&self) -> Result<Value, ConnectorError>;
    /// `check`.
    fn check(&self, config: &Value, handler: Arc<dyn HostHandler>) -> Result<(), ConnectorError>;
    /// `discover`.
    fn discover(
        &self,
        config: &Value,
        handler: Arc<dyn HostHandler>,
    ) -> Result<Catalog, ConnectorError>;
    /// `read`.
    fn read(
        &self,
        request: &ReadRequest,
        handler: Arc<dyn HostHandler>,
    ) -> Result<(), ConnectorError>;
}

impl Subject for Plugin {
    fn name(&self) -> String {
        self.info().name.clone()
    }
    fn spec(&self) -> Result<Value, ConnectorError> {
        Plugin::spec(self)
    }
    fn check(&self, config: &Value, handler: Arc<dyn HostHandler>) -> Result<(), ConnectorError> {
        Plugin::check(self, config, handler)
    }
    fn discover(
        &self,
        config: &Value,
        handler: Arc<dyn HostHandler>,
    ) -> Result<Catalog, ConnectorError> {
        Plugin::discover(self, config, handler)
    }
    fn read(
        &self,
        request: &ReadRequest,
        handler: Arc<dyn HostHandler>,
    ) -> Result<(), ConnectorError> {
        Plugin::read(self, request, handler)
    }
}

/// A connector compiled into the test binary, called through the same glue as a loaded
/// plugin (JSON across, panics caught). Build it with [`in_process`].
pub struct InProcessSubject<C>(PhantomData<fn() -> C>);

impl<C> std::fmt::Debug for InProcessSubject<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InProcessSubject")
    }
}

/// The connector `C`, run in this process, as a [`Subject`].
pub fn in_process<C: Connector>() -> InProcessSubject<C> {
    InProcessSubject(PhantomData)
}

impl<C: Connector> Subject for InProcessSubject<C> {
    fn name(&self) -> String {
        InProcess::<C>::info().map_or_else(|_| std::any::type_name::<C>().to_string(), |i| i.name)
    }
    fn spec(&self) -> Result<Value, ConnectorError> {
        let json = crate::export::spec::<C>()
            .into_result()
            .map_err(ConnectorError::from)?;
        serde_json::from_str(json.as_str())
            .map_err(|e| ConnectorError::system(format!("spec is not valid JSON: {e}")))
    }
    fn check(&self, config: &Value, handler: Arc<dyn HostHandler>) -> Result<(), ConnectorError> {
        InProcess::<C>::check(config, handler)
    }
    fn discover(
        &self,
        config: &Value,
        handler: Arc<dyn HostHandler>,
    ) -> Result<Catalog, ConnectorError> {
        InProcess::<C>::discover(config, handler)
    }
    fn read(
        &self,
        request: &ReadRequest,
        handler: Arc<dyn HostHandler>,
    ) -> Result<(), ConnectorError> {
        InProcess::<C>::read(request, handler)
    }
}
