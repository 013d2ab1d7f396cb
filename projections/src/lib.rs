//! crm-projections: the projection runner and the read models (customer 360, pipeline,
//! service backlog, timeline). The runner and models arrive with the projections issue; the
//! crate exists now so the workspace has its final shape.
