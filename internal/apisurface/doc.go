// Package apisurface holds no code: its test checks that every exported
// package-level function, type, variable and constant of the module is used
// somewhere outside test files, and lists, with the reason, the few that are
// exported for library users although moe itself does not call them.
package apisurface
