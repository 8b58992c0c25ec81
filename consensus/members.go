package consensus

import (
	"fmt"
	"slices"
	"strings"

	"github.com/vtrain/vtrain/runspec"
)

// Member is a member of a run as the agreed state records it. Every field
// follows from the certified history, so every honest node holds the same
// members at the same round.
type Member struct {
	ID      PeerID
	Founder bool   // named in the spec's members.genesis
	Seat    bool   // holds a voting seat
	Since   uint64 // the round it became a member (0 for founders)
	Work    uint64 // decided rounds that aggregated an update of it
	Last    uint64 // the last decided round that aggregated its update (its admission round's decision before any)
	// Residual is the error-feedback residual its last aggregated update
	// kept (that update's ResidualOut; the zero hash, the zero residual's
	// commitment, before any): its next update
	// must carry exactly that residual in, whatever rounds it sat out, so
	// that no member can restart its residual at will (package trainer:
	// the payload follows from the residual carried in).
	Residual Hash
	// Pace is when its updates reach the proposers, in milliseconds after
	// the round starts, smoothed (0: not known yet): each aggregated update
	// moves it half way to the arrival time the value reports.
	// The round deadline follows the members' paces (deadline.go).
	Pace uint32
	// Unproven is, for a private member (Policy.Proven), its last
	// aggregated update while no decided value has carried a pass on the
	// proof of its drawn step (the zero hash: none). Its next update waits
	// for that pass (Members.Gated): a private peer's proof comes after its
	// update is counted, and without the gate a Byzantine one could send a
	// forged update every round and answer its draws only at
	// privacy.proof_timeout, minutes of forged updates counted.
	Unproven Hash
}

// Members is a run's membership at a round: the members, sorted by ID, and
// the peers excluded for cheating (sorted), which never return.
type Members struct {
	List     []Member
	Excluded []PeerID
}

// Policy is the membership rule of a run (runspec's [members] and the
// probation of [verify]).
type Policy struct {
	Seats     int    // voting seats
	Probation uint64 // rounds a new member trains before it may take a seat (and is checked at the newcomer rate)
	Absent    uint64 // rounds without an aggregated update before a member is dropped
	Admit     int    // joiners admitted per round, at most
	Max       int    // members, at most
	Timeout   uint32 // rounds.timeout in milliseconds: the largest arrival time a pace takes in
	Commit    uint32 // rounds.commit_timeout in milliseconds (the deadline's floor is half of it)
	// Private is the private peers the rounds wait for, sorted: the
	// spec's privacy.peers when it waits for them (runspec's
	// WaitsForPrivate), none otherwise. Each is expected in every round
	// and the deadline follows its pace in full (deadline.go).
	Private []PeerID
	// Proven is every private peer of a zk run, sorted, whether the rounds
	// wait for them or not: the members whose updates are gated on their
	// proofs (Member.Unproven).
	Proven []PeerID
}

// PolicyOf returns a spec's membership policy.
func PolicyOf(spec runspec.Spec) Policy {
	p := Policy{Seats: spec.Members.Voters, Probation: uint64(spec.Verify.Probation),
		Absent: uint64(spec.Members.Absent), Admit: spec.Members.Admit, Max: spec.Members.Max,
		Timeout: paceMillis(spec.Rounds.Timeout.Duration), Commit: paceMillis(spec.Rounds.CommitTimeout.Duration)}
	if spec.Privacy.Mode == "zk" {
		for _, pp := range spec.Privacy.Peers {
			p.Proven = append(p.Proven, PeerID(pp.Peer))
		}
		slices.Sort(p.Proven)
	}
	if spec.WaitsForPrivate() {
		p.Private = slices.Clone(p.Proven)
	}
	return p
}

// proves reports whether id is a private peer, its work checked by proof.
func (p Policy) proves(id PeerID) bool {
	_, ok := slices.BinarySearch(p.Proven, id)
	return ok
}

// Gated reports why the member's update may not be aggregated in round, or
// "" when it may: a private member's last aggregated update (Unproven) has
// no pass on its proof yet, neither decided nor among passed, the updates
// whose pass the value under consideration carries. The gate lifts
// absentLimit-1 rounds after its last aggregated update: a pass that never
// comes (its drawn challengers silent) then costs an honest private peer
// all but one update in that many rounds, and a forger whose challengers
// collude gets one forged update in as many, where without the gate it got
// one a round. A private member is dropped f-1 rounds later than others
// (absentFor), so that the rounds from the lift to its drop have f+1
// proposers, one of them honest: two Byzantine proposers in turn cannot
// leave out its only two chances. A value may also take a gated update
// that the round's quorums need (gateWaived).
func (ms *Members) Gated(m *Member, round uint64, p Policy, passed func(Hash) bool) string {
	if m.Unproven == (Hash{}) || passed(m.Unproven) || round+1 >= m.Last+absentLimit(p, len(ms.Voters())) {
		return ""
	}
	return fmt.Sprintf("%s's update %s of round %d has no pass on its proof yet", m.ID, m.Unproven.Short(), m.Last)
}

// awaits reports whether id is a private peer the rounds wait for.
func (p Policy) awaits(id PeerID) bool {
	_, ok := slices.BinarySearch(p.Private, id)
	return ok
}

// expects reports whether round waits for m's update under p: when m is
// Expected, and always when m is a private peer the rounds wait for
// (seated or not, whatever rounds it missed: a private member that missed
// a round is the one whose pace most needs learning, see deadline.go).
func (p Policy) expects(m Member, round uint64) bool {
	return m.Expected(round) || p.awaits(m.ID)
}

// GenesisMembers returns the founders of a spec as round 0's members. The
// first members.voters of them (by ID, the order the spec lists them in)
// hold the seats; founders beyond the seats are members without one, and
// take seats as they empty like any member past its probation. Votes are
// what every member hears from every voter each round, so the seats, not
// the founders, set what agreement costs on the wire (package doc, "Cost").
func GenesisMembers(spec runspec.Spec) Members {
	var m Members
	for _, id := range spec.Members.Genesis {
		m.List = append(m.List, Member{ID: PeerID(id), Founder: true})
	}
	slices.SortFunc(m.List, func(a, b Member) int { return strings.Compare(string(a.ID), string(b.ID)) })
	for i := range m.List {
		m.List[i].Seat = i < spec.Members.Voters
	}
	return m
}

// Expected reports whether round waits for m's update (until its
// deadline): m votes, or an update of it was aggregated the round before.
func (m Member) Expected(round uint64) bool { return m.Seat || m.Work > 0 && m.Last+1 >= round }

// Voter reports whether m votes: whether it holds a seat.
func (m Member) Voter() bool { return m.Seat }

// eligible reports whether m may take an empty seat after round's
// decision: a founder without a seat at once (the run's creator chose it,
// as it chose the seated ones; Next seats founders first, every empty seat
// at once), anyone else once its probation passed
// with an update aggregated in at least half of its rounds. A seat lost
// to an exclusion is so filled by the next decision while unseated
// founders remain: a committee of 4 that loses one has no fault left to
// tolerate, and one more silent voter would stall it for good (no
// decision, so no exclusion either).
func (m Member) eligible(round uint64, p Policy) bool {
	if m.Seat {
		return false
	}
	return m.Founder || round+1 >= m.Since+p.Probation && m.Work >= (p.Probation+1)/2
}

// Newcomer reports whether m's updates of round are on probation (checked
// at the newcomer rate): its first Probation rounds as a member.
func (m Member) Newcomer(round uint64, probation uint64) bool { return round < m.Since+probation }

// Find returns the member with id.
func (ms *Members) Find(id PeerID) (*Member, bool) {
	i, ok := slices.BinarySearchFunc(ms.List, id, func(m Member, id PeerID) int { return strings.Compare(string(m.ID), string(id)) })
	if !ok {
		return nil, false
	}
	return &ms.List[i], true
}

// Has reports whether id is a member.
func (ms *Members) Has(id PeerID) bool { _, ok := ms.Find(id); return ok }

// IsExcluded reports whether id was excluded from the run.
func (ms *Members) IsExcluded(id PeerID) bool {
	_, ok := slices.BinarySearch(ms.Excluded, id)
	return ok
}

// Voters returns the members that hold a seat, sorted.
func (ms *Members) Voters() []PeerID {
	var out []PeerID
	for _, m := range ms.List {
		if m.Seat {
			out = append(out, m.ID)
		}
	}
	return out
}

// Clone returns a deep copy.
func (ms Members) Clone() Members {
	return Members{List: slices.Clone(ms.List), Excluded: slices.Clone(ms.Excluded)}
}

// Digest is the membership's identity, part of the state hash.
func (ms *Members) Digest() Hash {
	e := newEnc("vtrain/members/v3\x00")
	e.u64(uint64(len(ms.List)))
	for _, m := range ms.List {
		e.str(string(m.ID))
		e.flag(m.Founder)
		e.flag(m.Seat)
		e.u64(m.Since)
		e.u64(m.Work)
		e.u64(m.Last)
		e.hash(m.Residual)
		e.u32(m.Pace)
	}
	e.u64(uint64(len(ms.Excluded)))
	for _, p := range ms.Excluded {
		e.str(string(p))
	}
	// The private members' gates, only when some member has one: both
	// lists above carry their lengths, so what follows them is unambiguous,
	// and a membership without gates (every run without private peers)
	// keeps the digest it had before gates.
	var gated []Member
	for _, m := range ms.List {
		if m.Unproven != (Hash{}) {
			gated = append(gated, m)
		}
	}
	if len(gated) > 0 {
		e.u64(uint64(len(gated)))
		for _, m := range gated {
			e.str(string(m.ID))
			e.hash(m.Unproven)
		}
	}
	return e.sum()
}

// Validate checks the shape of a membership received from a peer (a
// state's): sorted, unique, consistent.
func (ms *Members) Validate(round uint64) error {
	for i, m := range ms.List {
		if m.ID == "" || i > 0 && ms.List[i-1].ID >= m.ID {
			return fmt.Errorf("consensus: members not strictly sorted")
		}
		if m.Since > round || m.Founder && m.Since != 0 {
			return fmt.Errorf("consensus: member %s since round %d, at round %d", m.ID, m.Since, round)
		}
		if m.Work > round || m.Last > round {
			return fmt.Errorf("consensus: member %s with work beyond round %d", m.ID, round)
		}
		if ms.IsExcluded(m.ID) {
			return fmt.Errorf("consensus: member %s is excluded", m.ID)
		}
	}
	for i, p := range ms.Excluded {
		if p == "" || i > 0 && ms.Excluded[i-1] >= p {
			return fmt.Errorf("consensus: excluded peers not strictly sorted")
		}
	}
	return nil
}

// VotersDigest is the identity of a voter set (sorted IDs): what a value
// names as the set that certifies it, and the set that certifies the next.
func VotersDigest(voters []PeerID) Hash {
	e := newEnc("vtrain/voters/v1\x00")
	e.u64(uint64(len(voters)))
	for _, p := range voters {
		e.str(string(p))
	}
	return e.sum()
}

// Quorum is the votes a certificate needs among n voters: more than two
// thirds.
func Quorum(n int) int { return 2*n/3 + 1 }

// quorumOf is the quorum the engine uses: Quorum, except in the test that
// weakens it to show the simulation harness catches the splits that
// follow (export_test.go).
var quorumOf = Quorum

// third is more than a third of n voters: at least one of them honest.
func third(n int) int { return n/3 + 1 }

// Faults is the most Byzantine voters among n that the protocol tolerates.
func Faults(n int) int { return (n - 1) / 3 }

// Proposer returns the proposer of view of round: the voters in turn.
func Proposer(round uint64, view uint32, voters []PeerID) PeerID {
	if len(voters) == 0 {
		return ""
	}
	return voters[(round+uint64(view))%uint64(len(voters))]
}

// absentLimit is the rounds without an aggregated update after which a
// member is dropped: the spec's, but never fewer than f+2 with f the
// tolerated faults among the voters, so that Byzantine proposers, each
// proposing in turn, cannot starve an honest member out of the run.
func absentLimit(p Policy, voters int) uint64 { return max(p.Absent, uint64(Faults(voters))+2) }

// absentFor is the rounds without an aggregated update after which member
// id is dropped: absentLimit, and f-1 more for a private peer of a zk run,
// whose updates the gate (Gated) may leave out until round Last+limit-1:
// from there to its drop, f+1 rounds, so f+1 proposers in turn.
func absentFor(p Policy, voters int, id PeerID) uint64 {
	limit := absentLimit(p, voters)
	if f := uint64(Faults(voters)); p.proves(id) && f > 1 {
		limit += f - 1
	}
	return limit
}

// Next returns the membership after round's decision v: the members whose
// updates it aggregated, on time or late (late.go), credited (their
// residual marks moved to what those updates kept: resid, by author; their
// paces moved towards the arrival times the value reports, clamped to
// timeout), the paces of the
// expected members it does not aggregate moved up by half (their update
// came after the round closed, if at all; a member with no pace yet gets
// one just past the round's deadline), the accused it excludes removed for
// good, members absent too long dropped, its admissions added, and the
// empty seats filled: by unseated founders (all at once), then by one
// eligible member with the most work (then the earliest, then the
// smallest ID).
func (ms *Members) Next(round uint64, v *Value, p Policy, resid map[PeerID]Hash) Members {
	out := ms.Clone()
	in := make(map[PeerID]bool, len(v.Updates))
	for _, u := range v.Updates {
		in[u.From] = true
	}
	deadline, paced := ms.Deadline(p)
	for i := range out.List {
		m := &out.List[i]
		if in[m.ID] || !p.expects(*m, round) {
			continue
		}
		if m.Pace == 0 && paced {
			// Missed with no pace yet (it was waited for until the
			// deadline): just past the deadline, a known straggler until
			// an update of it comes in time.
			m.Pace = min(paceMillis(deadline)+1, p.Timeout)
			continue
		}
		m.Pace = nextPace(m.Pace, min(2*min(m.Pace, 1<<30), p.Timeout)) // missed: it came after the round closed
	}
	passed := v.passes()
	for i := range out.List {
		if m := &out.List[i]; passed[m.Unproven] {
			m.Unproven = Hash{}
		}
	}
	for _, u := range v.Updates {
		if m, ok := out.Find(u.From); ok {
			m.Work++
			m.Last = round
			m.Residual = resid[u.From]
			m.Pace = nextPace(m.Pace, min(u.At, p.Timeout))
			if p.proves(u.From) {
				m.Unproven = u.ID
			}
		}
	}
	gone := map[PeerID]bool{}
	for _, p := range v.Excluded() {
		gone[p] = true
		if !out.IsExcluded(p) {
			out.Excluded = append(out.Excluded, p)
		}
	}
	slices.Sort(out.Excluded)
	nv := len(ms.Voters())
	out.List = slices.DeleteFunc(out.List, func(m Member) bool {
		return gone[m.ID] || round >= m.Last+absentFor(p, nv, m.ID)
	})
	// Empty seats go to unseated founders first, all at once, then to one
	// other member a round (a wave of fresh identities takes seats no
	// faster than that).
	other := false
	for len(out.Voters()) < p.Seats {
		best := -1
		for i, m := range out.List {
			if !m.eligible(round, p) || !m.Founder && other {
				continue
			}
			if b := best; b < 0 || m.Founder && !out.List[b].Founder ||
				m.Founder == out.List[b].Founder && (m.Work > out.List[b].Work || m.Work == out.List[b].Work && m.Since < out.List[b].Since) {
				best = i
			}
		}
		if best < 0 {
			break
		}
		other = other || !out.List[best].Founder
		out.List[best].Seat = true
	}
	for _, j := range v.Admit {
		out.List = append(out.List, Member{ID: j.From, Since: round + 1, Last: round})
	}
	slices.SortFunc(out.List, func(a, b Member) int { return strings.Compare(string(a.ID), string(b.ID)) })
	return out
}
