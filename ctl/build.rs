// berthctl's build information comes from the same script as berthd's:
// the git commit and the build date for `berthctl version` (see there).
include!("../supervisor/build.rs");
