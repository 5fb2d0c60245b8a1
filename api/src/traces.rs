//! OpenTelemetry traces over OTLP/HTTP, off unless `OTEL_EXPORTER_OTLP_ENDPOINT` names a collector: every
//! request is a span (method, route, status, request id), exported in batches in the background.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::SdkTracerProvider;

/// Why traces could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("OpenTelemetry: {0}")]
pub struct TracesError(String);

/// A layer exporting spans to the collector at `endpoint` (the OTLP/HTTP base, such as
/// `http://collector:4318`), and the provider to shut down (flushing what is queued) before exit.
pub fn otlp_layer<S>(endpoint: &str) -> Result<(impl tracing_subscriber::Layer<S>, SdkTracerProvider), TracesError>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    let base = endpoint.trim_end_matches('/');
    let endpoint = if base.ends_with("/v1/traces") { base.to_owned() } else { format!("{base}/v1/traces") };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| TracesError(e.to_string()))?;
    let processor = opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
        exporter,
        opentelemetry_sdk::runtime::Tokio,
    )
    .build();
    let resource = opentelemetry_sdk::Resource::builder().with_service_name("mcp-gateway").build();
    let provider = SdkTracerProvider::builder().with_span_processor(processor).with_resource(resource).build();
    let tracer = provider.tracer("mcp-gateway");
    Ok((tracing_opentelemetry::layer().with_tracer(tracer), provider))
}
