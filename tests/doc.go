// Package tests holds skiff's black-box functional tests: they run the built
// skiff binary as root against real namespaces, cgroups and systemd, each test
// with its own --dir and --local-config. Build tag "functional"; run them with
// `make test` (which builds the binary, the stage1 image and the test images
// first and passes their paths in SKIFF_BIN and SKIFF_TEST_IMAGES).
//
// The stage1 conformance suite (conformance_test.go) runs against the stage1
// named by SKIFF_STAGE1 (default: the one beside the binary), so every flavor
// is held to the same contract.
package tests
