// Package appc imports App Container images (ACIs, github.com/appc/spec) into
// skiff's OCI store. An ACI is a tar (plain, gzip, bzip2 or xz) holding a
// JSON image manifest and a rootfs/ directory; skiff converts it on import
// into a one-layer OCI image and keeps the original manifest as a blob.
//
// The map, top-down:
//
//	Open      resolves a reference to a local ACI file and reads its manifest:
//	          FILE.aci in place (FILE.aci.asc beside it), https://URL downloaded
//	          into the store's tmp/ (URL.asc beside it), and an appc name
//	          (DOMAIN/PATH[:VERSION]) found by discovery (discovery.go).
//	Verify    checks the detached signature for the manifest's name, through
//	          a caller-supplied check (trust.Keystore.VerifyDetached), and pins
//	          the verified bytes.
//	Import    converts and stores: one pass computes the layer's diffID, a
//	          second (only if the store lacks the layer) streams the re-rooted
//	          rootfs tar into the store's layer extraction and blob at once.
//	          The OCI config comes from Config (convert.go); the OCI manifest's
//	          annotations point at the original manifest (AnnotationManifest).
//
// Not supported, refused with a clear error: dependencies, event handlers,
// path whitelists and encrypted ACIs.
//
// Discovery follows spec/discovery.md: https://NAME?ac-discovery=1, then each
// parent path, choosing the templates that fill the most labels (version when
// given, os=linux, arch of this machine). As an extension for local servers,
// a reference HOST:PORT/PATH[:VERSION] discovers on that port; the image name
// is HOST/PATH (the port is not part of it).
package appc
