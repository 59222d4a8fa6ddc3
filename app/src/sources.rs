//! Opening a capture source from its id, for the CLI and the GUI alike.

use anyhow::Result;
use peep_capture::SourceId;
use peep_capture::backend::CaptureBackend;
use peep_capture::backend::synthetic::SyntheticBackend;
use peep_capture::platform::PlatformSession;

/// Opens the backend for a source id.
pub fn open_source(source: Option<&str>, synthetic_size: (u32, u32), cursor: bool) -> Result<Box<dyn CaptureBackend>> {
    let id = source.map(SourceId::parse).transpose()?;
    let mut backend: Box<dyn CaptureBackend> = match id {
        Some(SourceId::Synthetic(scene)) => Box::new(SyntheticBackend::new(synthetic_size.0, synthetic_size.1, scene)?),
        id => {
            let session = PlatformSession::connect()?;
            let id = match id {
                Some(id) => id,
                None => session.primary_display()?,
            };
            Box::new(session.capture(&id)?)
        }
    };
    backend.set_cursor(cursor);
    Ok(backend)
}
