package trace

import (
	"encoding/json"
	"io"
)

// Records flattens the trace into JSON-lines records, summary first, then
// depth first: a workflow, an execution, an attempt or a fault per record,
// flat (its fields beside "kind" and the IDs that place it in the tree:
// workflow_id, parent_workflow_id, execution_id, step_id, step). The names
// are an interface.
func Records(t *Trace) ([]map[string]any, error) {
	var recs []map[string]any
	add := func(kind string, v any, ids map[string]any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		rec := map[string]any{}
		if err := json.Unmarshal(b, &rec); err != nil {
			return err
		}
		for k, id := range ids {
			rec[k] = id
		}
		rec["kind"] = kind
		recs = append(recs, rec)
		return nil
	}
	if err := add("summary", t.Summary, nil); err != nil {
		return nil, err
	}
	var walk func(wf *Workflow, parent string) error
	walk = func(wf *Workflow, parent string) error {
		flat := *wf
		flat.Executions = nil
		ids := map[string]any{}
		if parent != "" {
			ids["parent_workflow_id"] = parent
		}
		if err := add("workflow", flat, ids); err != nil {
			return err
		}
		for _, x := range wf.Executions {
			fx := *x
			fx.Steps, fx.Children, fx.Faults = nil, nil, nil
			if err := add("execution", fx, map[string]any{"workflow_id": wf.ID}); err != nil {
				return err
			}
			for _, s := range x.Steps {
				for _, a := range s.Attempts {
					ids := map[string]any{"workflow_id": wf.ID, "execution_id": x.ID, "step_id": s.StepID, "step": s.Name}
					if err := add("attempt", a, ids); err != nil {
						return err
					}
				}
			}
			for _, f := range x.Faults {
				if err := add("fault", f, map[string]any{"workflow_id": wf.ID, "execution_id": x.ID}); err != nil {
					return err
				}
			}
			for _, c := range x.Children {
				if err := walk(c, wf.ID); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return recs, walk(t.Root, "")
}

// WriteJSONL writes the records, one JSON object a line; with seen, only
// those it has not seen, which it then remembers (a follow streams them).
func WriteJSONL(w io.Writer, t *Trace, seen map[string]bool) error {
	recs, err := Records(t)
	if err != nil {
		return err
	}
	for _, r := range recs {
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		if seen != nil {
			if seen[string(b)] {
				continue
			}
			seen[string(b)] = true
		}
		if _, err := w.Write(append(b, '\n')); err != nil {
			return err
		}
	}
	return nil
}
