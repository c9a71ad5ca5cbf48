package cloudrun

import (
	"testing"

	"cloud.google.com/go/iam/apiv1/iampb"
)

func TestInvokerPolicy(t *testing.T) {
	t.Parallel()
	viewer := &iampb.Binding{Role: "roles/run.viewer", Members: []string{"user:a@example.com"}}
	cases := []struct {
		name        string
		in          *iampb.Policy
		public      bool
		changed     bool
		wantInvoker []string
	}{
		{"grant on empty", &iampb.Policy{Etag: []byte("e")}, true, true, []string{"allUsers"}},
		{"already public", &iampb.Policy{Bindings: []*iampb.Binding{{Role: invokerRole, Members: []string{"allUsers"}}}}, true, false, []string{"allUsers"}},
		{"add to invokers", &iampb.Policy{Bindings: []*iampb.Binding{viewer, {Role: invokerRole, Members: []string{"user:b@example.com"}}}}, true, true, []string{"user:b@example.com", "allUsers"}},
		{"private stays", &iampb.Policy{Bindings: []*iampb.Binding{viewer}}, false, false, nil},
		{"close public", &iampb.Policy{Bindings: []*iampb.Binding{{Role: invokerRole, Members: []string{"allUsers", "user:b@example.com", "allAuthenticatedUsers"}}}}, false, true, []string{"user:b@example.com"}},
		{"drop empty binding", &iampb.Policy{Bindings: []*iampb.Binding{{Role: invokerRole, Members: []string{"allUsers"}}}}, false, true, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, changed := invokerPolicy(tc.in, tc.public)
			if changed != tc.changed {
				t.Errorf("changed = %v, want %v", changed, tc.changed)
			}
			var got []string
			for _, b := range out.Bindings {
				if b.Role == invokerRole {
					got = b.Members
				}
				if len(b.Members) == 0 {
					t.Errorf("empty binding left in policy: %v", b)
				}
			}
			if len(got) != len(tc.wantInvoker) {
				t.Fatalf("invokers = %v, want %v", got, tc.wantInvoker)
			}
			for i := range got {
				if got[i] != tc.wantInvoker[i] {
					t.Errorf("invokers = %v, want %v", got, tc.wantInvoker)
				}
			}
			if string(out.Etag) != string(tc.in.Etag) {
				t.Error("the etag must be kept so a concurrent change is refused")
			}
		})
	}
}
