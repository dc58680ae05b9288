//! Faultline's checker: reads histories and judges them. (Being written; see issue 5.)
#![deny(missing_docs)]
