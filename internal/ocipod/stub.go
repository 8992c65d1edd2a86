package ocipod

import (
	"errors"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// errTODO marks what is not written yet.
var errTODO = errors.New("not implemented yet")

func findStage1(name, systemDir string) (Stage1, error)                { return Stage1{}, errTODO }
func prepare(root, id, bundle string, stage1 Stage1) (*Pod, error)     { return nil, errTODO }
func load(root, id string) (*Pod, error)                               { return nil, errTODO }
func list(root string) ([]string, error)                               { return nil, errTODO }
func (p *Pod) create(opts CreateOpts) (int, error)                     { return 0, errTODO }
func (p *Pod) start() error                                            { return errTODO }
func (p *Pod) signal(sig unix.Signal, all bool) error                  { return errTODO }
func (p *Pod) exec(pr *specs.Process, o ExecOpts) (*os.Process, error) { return nil, errTODO }
func (p *Pod) delete(force bool) error                                 { return errTODO }
func (p *Pod) state() (specs.State, error)                             { return specs.State{}, errTODO }
func (p *Pod) exitCode() (int, bool)                                   { return 0, false }
