//! Placeholder: filled by the redb backend work.
