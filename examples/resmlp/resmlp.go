// Package resmlp is a model that vtrain does not build in, brought the way
// an ML engineer brings one: a residual MLP with tanh activations,
//
//	h₀ = tanh(x·W_in + b_in)
//	hᵢ = hᵢ₋₁ + tanh(hᵢ₋₁·Wᵢ + bᵢ)   for each residual block i
//	logits = h·W_out + b_out
//
// defined as a Gorgonia graph from vtrain's ops and registered under the
// name "resmlp" when the package is imported. A spec's hidden widths are
// the residual stream's width, once per layer: [128] is the input layer
// alone, [128, 128] adds one residual block (all widths must be equal);
// with no widths it is [128, 128].
//
// The binary in cmd/vtrain-resmlp is vtrain with this model: every
// command (train, node, demo, audit, export) takes it, e.g.
//
//	go run ./examples/resmlp/cmd/vtrain-resmlp train --model resmlp --epochs 1
//
// The parameter names are those of this PyTorch module, so that exported
// checkpoints load into it:
//
//	class ResMLP(nn.Module):
//	    def __init__(self, width=128, blocks=1):
//	        super().__init__()
//	        self.inp = nn.Linear(784, width)
//	        self.blocks = nn.ModuleList(nn.Linear(width, width) for _ in range(blocks))
//	        self.out = nn.Linear(width, 10)
//	    def forward(self, x):
//	        h = torch.tanh(self.inp(x))
//	        for b in self.blocks:
//	            h = h + torch.tanh(b(h))
//	        return self.out(h)
package resmlp

import (
	"fmt"

	"github.com/vtrain/vtrain/models"
	G "gorgonia.org/gorgonia"
)

// Name is the model's kind in specs and on the command line.
const Name = "resmlp"

// DefaultWidths applies when a spec gives no hidden widths.
var DefaultWidths = []int{128, 128}

func init() { models.MustRegister(Definition) }

// Definition is the model, as registered.
var Definition = models.Definition{
	Name:           Name,
	Params:         params,
	Forward:        forward,
	FLOPsPerSample: flops,
	Defaults: func(s models.Spec) models.Spec {
		if len(s.Hidden) == 0 {
			s.Hidden = append([]int(nil), DefaultWidths...)
		}
		return s
	},
}

// widths returns the residual stream's width and the number of residual
// blocks.
func widths(s models.Spec) (width, blocks int, err error) {
	ws := s.Hidden
	if len(ws) == 0 {
		ws = DefaultWidths
	}
	if len(s.Channels) != 0 {
		return 0, 0, fmt.Errorf("resmlp takes no channels")
	}
	for _, w := range ws {
		if w != ws[0] {
			return 0, 0, fmt.Errorf("resmlp's widths must be equal (a residual stream), got %v", ws)
		}
	}
	return ws[0], len(ws) - 1, nil
}

func params(s models.Spec) ([]models.ParamDef, error) {
	w, blocks, err := widths(s)
	if err != nil {
		return nil, err
	}
	in := s.Rows * s.Cols
	ps := []models.ParamDef{
		{Name: "inp.weight", Shape: []int{in, w}, FanIn: in, Transposed: true},
		{Name: "inp.bias", Shape: []int{w}, FanIn: in},
	}
	for i := range blocks {
		ps = append(ps,
			models.ParamDef{Name: fmt.Sprintf("blocks.%d.weight", i), Shape: []int{w, w}, FanIn: w, Transposed: true},
			models.ParamDef{Name: fmt.Sprintf("blocks.%d.bias", i), Shape: []int{w}, FanIn: w})
	}
	return append(ps,
		models.ParamDef{Name: "out.weight", Shape: []int{w, s.Classes}, FanIn: w, Transposed: true},
		models.ParamDef{Name: "out.bias", Shape: []int{s.Classes}, FanIn: w}), nil
}

func forward(x *G.Node, p []*G.Node, s models.Spec) (*G.Node, error) {
	pre, err := models.Dense(x, p[0], p[1])
	if err != nil {
		return nil, err
	}
	h, err := models.Tanh(pre)
	if err != nil {
		return nil, err
	}
	for i := 2; i+2 < len(p); i += 2 {
		if pre, err = models.Dense(h, p[i], p[i+1]); err != nil {
			return nil, err
		}
		act, err := models.Tanh(pre)
		if err != nil {
			return nil, err
		}
		if h, err = models.Add(h, act); err != nil {
			return nil, err
		}
	}
	return models.Dense(h, p[len(p)-2], p[len(p)-1])
}

func flops(s models.Spec) float64 {
	w, blocks, err := widths(s)
	if err != nil {
		return 0
	}
	return 6 * float64(s.Rows*s.Cols*w+blocks*w*w+w*s.Classes)
}
