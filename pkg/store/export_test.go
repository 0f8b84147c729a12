package store

// ScansAnyway is scansAnyway, for the tests of package store_test.
var ScansAnyway = scansAnyway
