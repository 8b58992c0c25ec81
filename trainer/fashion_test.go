package trainer

import (
	"testing"

	"github.com/vtrain/vtrain/internal/testenv"
	"github.com/vtrain/vtrain/models"
	"github.com/vtrain/vtrain/models/data"
)

// TestFashionMNISTOneEpoch trains softmax regression for one epoch on the
// real Fashion-MNIST (Debian's dataset-fashion-mnist, which CI installs;
// without it the test skips, or fails under CI=true).
// Published baselines put logistic regression at 0.84; one epoch of AdamW
// reaches about 0.82.
func TestFashionMNISTOneEpoch(t *testing.T) {
	if testing.Short() {
		t.Skip("trains one epoch")
	}
	dir, err := data.Find()
	testenv.Require(t, err == nil, "Fashion-MNIST not installed: %v", err)
	set, err := data.LoadFashionMNIST(dir)
	if err != nil {
		t.Fatal(err)
	}
	if set.Train.Len() != 60000 || set.Test.Len() != 10000 || set.Train.Rows != 28 {
		t.Fatalf("Fashion-MNIST has %d/%d samples of %dx%d", set.Train.Len(), set.Test.Len(), set.Train.Rows, set.Train.Cols)
	}
	spec, _ := models.NewSpec(models.LogReg, nil)
	cfg := DefaultConfig(spec)
	tr, err := New(cfg, set.Train)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	trainSteps(t, tr, int(tr.StepsPerEpoch()))
	ev, err := Evaluate(spec, tr.Params(), set.Test, 1000)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("logreg, 1 epoch: test accuracy %.4f, loss %.4f", ev.Accuracy, ev.Loss)
	if ev.Accuracy < 0.80 {
		t.Fatalf("test accuracy %.4f < 0.80", ev.Accuracy)
	}
}
