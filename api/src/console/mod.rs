//! The web console at `/console`: server-rendered pages for analysts and auditors (customers
//! as of any date, timelines with their verification, pipeline, service, analytics,
//! operations), signed in with an API key exchanged for a session cookie.

pub mod charts;
