//! The container workflow shared by the commands: create a container from
//! an image, start its task, exec into it, attach to it, remove it. Each
//! step is one file and takes plain options (no clap types, no printing):
//! `commands/` parses flags into these options and prints what comes
//! back, so a Docker-shaped `run`/`start`/`rm` and the admin groups
//! (`containers`, `tasks`) share one implementation.
//!
//! Arrows point down: `run` composes `create`, `tasks` and `containers`;
//! `tasks` and `exec` sit on `attach` and `containers`; nothing here
//! imports `commands/`.

pub mod attach;
pub mod containers;
pub mod create;
pub mod engine;
pub mod exec;
pub mod images;
pub mod run;
pub mod tasks;
