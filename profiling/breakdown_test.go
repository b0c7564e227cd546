package profiling

import (
	"testing"
	"time"
)

func TestBreakdownOverheadPerCheckpoint(t *testing.T) {
	ms := time.Millisecond
	bd := Breakdown{Mode: "durable", Checkpoints: 100}
	bd.Fill(60*ms, 5*ms, 10*ms, 5*ms)
	if bd.RestMs != 40 || bd.Ratio != nil {
		t.Fatalf("rest %v ratio %v, want 40 and none", bd.RestMs, bd.Ratio)
	}
	if bd.PerCheckpointMs == nil || *bd.PerCheckpointMs != 0.4 || bd.PerCheckpointBasis != "rest / checkpoints" {
		t.Fatalf("per checkpoint %v (%s), want 0.4 from 40/100", bd.PerCheckpointMs, bd.PerCheckpointBasis)
	}

	plain := 20.0
	cmp := Breakdown{Mode: "compare", Checkpoints: 100, PlainWallMs: &plain}
	cmp.Fill(60*ms, 0, 0, 0)
	if cmp.Ratio == nil || *cmp.Ratio != 3 {
		t.Fatalf("ratio %v, want 3", cmp.Ratio)
	}
	if cmp.PerCheckpointMs == nil || *cmp.PerCheckpointMs != 0.4 || cmp.PerCheckpointBasis != "(durable - plain) / checkpoints" {
		t.Fatalf("per checkpoint %v (%s), want 0.4 from (60-20)/100", cmp.PerCheckpointMs, cmp.PerCheckpointBasis)
	}

	none := Breakdown{Mode: "plain"}
	none.Fill(60*ms, 0, 0, 0)
	if none.PerCheckpointMs != nil || none.Ratio != nil {
		t.Fatalf("a plain run has no checkpoints and no ratio: %+v", none)
	}
}
