package appc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/skiff-project/skiff/image/store"
)

// ErrChanged is returned when the ACI file's content differs from what Open
// read or Verify checked.
var ErrChanged = errors.New("image archive changed while it was imported")

// Import converts the ACI src into an OCI image in s, named as Names says
// and recorded as src.Verification says.
//
// The first pass over the file computes the layer's diffID without writing
// anything; if the store lacks the layer (or its blob), a second pass streams
// the same re-rooted tar into store.PutLayer and store.PutBlob at once. No
// copy of the rootfs is kept besides the store's own. If src was verified,
// both passes must read the bytes that were verified.
func Import(ctx context.Context, s *store.Store, src *Source) (*store.Image, error) {
	if k := src.Verification.Kind; k != "" && k != store.Unverified && src.verified == "" {
		return nil, fmt.Errorf("image %q: recorded as verified (%s) but its signature was not checked", src.Manifest.Name, k)
	}
	c, err := convert(ctx, src.Path, io.Discard)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(c.manifest, src.rawManifest) || (src.verified != "" && c.aci != src.verified) {
		return nil, ErrChanged
	}
	_, haveLayer, err := s.LayerDir(c.diffID)
	if err != nil {
		return nil, err
	}
	if !haveLayer || !s.HasBlob(c.diffID) {
		if err := storeLayer(ctx, s, src.Path, c, !haveLayer); err != nil {
			return nil, err
		}
	}
	id, err := putImage(s, src.Manifest, c)
	if err != nil {
		return nil, err
	}
	return s.AddImage(id, Names(src.Manifest, src.Origin), src.Verification)
}

// putImage stores the original manifest, the OCI config and the OCI
// manifest, and returns the latter's digest (the image ID).
func putImage(s *store.Store, m *ImageManifest, c converted) (digest.Digest, error) {
	appcManifest, err := putJSONBlob(s, c.manifest)
	if err != nil {
		return "", err
	}
	cfgData, err := json.Marshal(Config(m, c.diffID))
	if err != nil {
		return "", err
	}
	cfg, err := putJSONBlob(s, cfgData)
	if err != nil {
		return "", err
	}
	cfg.MediaType = ocispec.MediaTypeImageConfig
	om := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    cfg,
		Layers:    []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayer, Digest: c.diffID, Size: c.layerSize}},
		Annotations: map[string]string{
			AnnotationManifest:  appcManifest.Digest.String(),
			AnnotationName:      m.Name,
			AnnotationACIDigest: c.aci.String(),
		},
	}
	data, err := json.Marshal(om)
	if err != nil {
		return "", err
	}
	d, err := putJSONBlob(s, data)
	return d.Digest, err
}

func putJSONBlob(s *store.Store, data []byte) (ocispec.Descriptor, error) {
	d := ocispec.Descriptor{Digest: digest.FromBytes(data), Size: int64(len(data))}
	return d, s.PutBlob(d.Digest, d.Size, bytes.NewReader(data))
}

// storeLayer runs the second pass: the re-rooted tar goes to PutBlob and, if
// extract, to PutLayer, both reading as it is written.
func storeLayer(ctx context.Context, s *store.Store, file string, want converted, extract bool) error {
	sinks := []*sink{startSink(func(r io.Reader) error { return s.PutBlob(want.diffID, want.layerSize, r) })}
	if extract {
		sinks = append(sinks, startSink(func(r io.Reader) error { _, err := s.PutLayer(want.diffID, r); return err }))
	}
	ws := make([]io.Writer, len(sinks))
	for i, sk := range sinks {
		ws[i] = sk.pw
	}
	c, err := convert(ctx, file, io.MultiWriter(ws...))
	if err == nil && c.aci != want.aci {
		err = ErrChanged
	}
	for _, sk := range sinks {
		sk.pw.CloseWithError(err) // nil: EOF for the readers
	}
	var errs []error
	for _, sk := range sinks {
		sk.wg.Wait()
		errs = append(errs, sk.err)
	}
	if err != nil && !errors.Is(err, errSinkFailed) {
		return err
	}
	if sinkErr := errors.Join(errs...); sinkErr != nil {
		return sinkErr // more telling than the write error it caused
	}
	return err
}

// errSinkFailed is what the writer of a pipe sees once its reader failed.
var errSinkFailed = errors.New("layer import failed")

// sink runs a consumer of a pipe in a goroutine. When the consumer returns
// early (success or not), the rest of the stream is drained or refused so
// the writer never blocks.
type sink struct {
	pw  *io.PipeWriter
	wg  sync.WaitGroup
	err error
}

func startSink(consume func(io.Reader) error) *sink {
	pr, pw := io.Pipe()
	sk := &sink{pw: pw}
	sk.wg.Add(1)
	go func() {
		defer sk.wg.Done()
		err := consume(pr)
		if err == nil {
			_, err = io.Copy(io.Discard, pr)
		}
		if err != nil {
			pr.CloseWithError(errSinkFailed)
		}
		sk.err = err
	}()
	return sk
}
