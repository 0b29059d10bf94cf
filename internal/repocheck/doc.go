// Package repocheck holds no code: its tests check the repository as a
// whole. Every exported package-level function, type, variable and
// constant is used outside test files, except the few that are exported
// for library users and listed with the reason; and every link in the
// Markdown files names a file inside the repository.
package repocheck
