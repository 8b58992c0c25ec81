// Package consensus is vtrain's round protocol: a pure state machine (no
// network, no clock, no goroutines) that decides, round after round, which
// updates a run aggregates, whom it admits and excludes, and the state this
// leads to, with certificates that any member, joiner or auditor checks.
// The gossip layer moves its messages; package node connects it to
// training; trainer never imports it the other way round.
//
// # Membership
//
// A run's members are derived by every honest node the same way from the
// certified history: the founders the spec names (members.genesis), plus
// joiners admitted by a decided value, minus the peers excluded for
// cheating (for good) and the members with no update aggregated for
// members.absent rounds (they may ask to join again). The membership is
// part of the state and of its hash, so it is certified with every
// decision.
//
// Identities are free, votes are not. A joiner asks with a signed join
// request; at most members.admit are admitted per round, in an order no one
// knows before the round's state does (a hash of the state and the peer),
// up to members.max members. An admitted member trains and contributes at
// once (its updates spot-checked at the newcomer rate during its
// probation), and is credited for every aggregated update, but a vote is a
// seat, and seats are few: members.voters of them. The founders hold the
// first, in the order the spec lists them (by ID); founders beyond the
// seats are members without one, and take an empty seat first, without a
// probation. A seat that is empty (never
// filled, or vacated by a member excluded or dropped) goes, at most one per
// round, to the member with the most verified work among those whose
// probation (verify.probation rounds as a member, an update aggregated in
// at least half of them) has passed. So a wave of fresh identities, however
// large, has no vote: it can only take seats that are empty, one a round,
// after a probation of real work, and only by out-working every member
// that was there before it. With at least as many seats as founders, the
// founders keep every vote until one of them leaves. The safety of the
// protocol needs fewer than a third of the seats Byzantine; the run's
// creator chooses the founders and the number of seats.
//
// Seats also set what agreement costs: every member hears each voter's
// prevote and precommit every round, so votes on the wire grow as
// seats × members, not members², and certificates carry at most
// seats signatures. A run of many peers keeps a bounded committee
// (members.voters, 4 by default) instead of a vote per founder; what the
// smaller committee gives up is the number of Byzantine seats tolerated
// ((seats−1)/3), not who may train or be credited.
// Messages from non-members (and votes from members without a seat) never
// count toward a quorum, never make anyone wait, and never move a
// deadline: a proposer waits for the voters and for the members that
// contributed to the last round, nobody else.
//
// # Rounds and certificates
//
// Round r starts from the certified state S_r. Every member trains from
// it and gossips its signed update. The round's voters V_r (about n, of
// which f = ⌊(n−1)/3⌋ may be Byzantine) then agree on one value with
// Tendermint's algorithm (Buchman, Kwon, Milosevic, "The latest gossip on
// BFT consensus", 2018, Algorithm 1; its rounds are views here, its
// heights our rounds): in each view a proposer, the voters in turn,
// proposes a value; voters prevote and precommit its ID or nil, lock on a
// value once more than two thirds prevote it, and decide once more than
// two thirds precommit it. A value names the updates it aggregates (by ID
// and author, one per member, including those of at least a quorum of the
// voters), its admissions (signed join requests), the spot-check verdicts
// it acts on (signed by the challengers the beacon drew), proofs of
// equivocation (two signed votes), and the resulting state's hash and the
// next voters. A voter prevotes a value only if it checks all of this
// itself, re-computing the aggregate and the membership from the updates
// it holds (fetching any it lacks), so a value leading to a made-up state
// never gathers a quorum.
//
// The precommits of more than two thirds of V_r for a value are its quorum
// certificate: the decision of round r is final with it and not before.
// Nodes gossip a round's commit (value and certificate) to peers that lag.
//
// # Nothing is adopted without a certificate
//
// A node applies a decided value itself when it holds the updates. When it
// does not (it lagged, restarted, or joins), it asks peers for a proof: the
// certified decisions since its round that changed the voter set, and the
// last few. It checks each certificate against the voter set the chain so
// far establishes, starting from a state it trusts (genesis, its own
// checkpoint, its current round), and only then fetches the state the last
// certificate vouches for, adopting it if and only if it hashes to that.
// Rounds between two links are skipped safely: an honest voter signs a
// value only when the value names its round's true voter set, so a link
// certified by the set the chain establishes proves that set was still the
// voters'. A hello, a commit, or a message of a later round from anyone is
// at most a reason to ask for a proof.
//
// # Spot-checks are refereed
//
// After each decision the beacon (a hash of the decided value) draws each
// aggregated update at verify.rate (verify.newcomer_rate during its
// author's probation, counted from the agreed admission round), and for a
// drawn update verify.challengers distinct challengers among the round's
// other authors. Nothing about the draw is knowable before the update is
// committed in a decided value. A challenger re-executes the whole round
// from the agreed state and compares every committed root; a verdict is a
// claim, not an opinion: a failure names a Fault, the segment it rests on
// (the first that missed its root) and carries the accused's signed answer
// (the hash of its state after each step of that segment), so that any
// member re-checks it cheaply (see package trainer's Referee) before it
// votes for a value that acts on it:
//
//   - a verdict no draw backs (an update not drawn, another challenger,
//     an answer the accused did not sign) is a lie on its face: it
//     excludes its signer;
//   - FaultAnswer (the accused's own leaves contradict its commitment) is
//     judged by the engine alone;
//   - FaultStep, FaultLink and FaultSegment are re-executed by each
//     member's driver (one inner step; the opened residual blocks; in
//     runs with a tolerance, the round) from states fetched by hash from
//     the challenger or the accused: upheld, the accused is excluded;
//     overturned, the signer is;
//   - FaultSilent makes each member ask the accused itself; it is upheld
//     only where the member got no valid answer either, so the accused
//     goes only when a quorum of voters found it silent.
//
// A value carries upheld failures (and passes) in Verdicts and the false
// verdicts in Overturned; an honest voter prevotes it only when its own
// referee agrees with each (a ruling still running leaves the value
// pending, like a missing update). A decided value is applied without
// re-refereeing: its certificate is the quorum's finding.
//
// # What a check covers
//
// The inner steps, wholly: the challenger re-executes every one from the
// agreed state (public: θ_r, the run's data and seeds, the inner
// optimizer's fresh moments), so a checked update whose steps deviate
// anywhere is caught, whether it skipped them, replayed another's, or
// trained honestly from a state it jumped to at one boundary (the last
// escaped checks that re-executed one drawn segment, with probability
// 15/16 per check). The payload, by sampling: the residual is committed as
// a Merkle root over blocks of verify.residual_block values, and the
// accused opens verify.openings blocks (m) drawn by the beacon, half of
// them among the blocks its payload sends from (in proportion to what each
// sends), the rest uniformly; the challenger re-encodes them from its
// re-executed delta (selected iff above the payload's threshold τ, the
// sent sign or level, the residual kept bit for bit under its root). A lie
// on a share g of the sent values is caught with probability at least
// 1 − (1 − g)^⌈m/2⌉ per check (a sign flip, IPM or ALIE payload, false
// nearly everywhere, with near certainty); a residual kept falsely on a
// share f of the blocks with about 1 − (1 − f)^⌊m/2⌋. A lie confined to a
// few unsent blocks is caught with probability about (m/2)·(false
// blocks)/b per check (0.06% a block at the defaults); it can hide values
// in the residual that later rounds send. The residual is chained: each
// member's certified mark (Member.Residual) is what its last aggregated
// update kept, and its next update must carry exactly that in, whatever
// rounds it sat out, so no member restarts its residual at will. A 1-bit
// scale (the mean magnitude of its chunk's sent values, which span the
// whole vector) is bounded below by τ but not above by any sample: an
// inflated scale becomes a debt in the chained residual, sent back in
// later rounds. What escapes is bounded like any update by the aggregation
// rule (centered clipping: the median update's norm over n per round) and
// the norm bound.
//
// Detection. With rate p, k challengers drawn without replacement from
// the m other authors of whom c collude, a checked cheat is caught with
// probability p·(1 − C(c,k)/C(m,k)) per update (times the sampling's
// share above for a payload lie confined to a few residual blocks); a
// cheater that starts cheating in round s is excluded by round s+10 if
// one of its updates of rounds s..s+7 is caught (a verdict is decided one
// or two rounds after the update), so with probability
// 1 − (1 − p·(1 − C(c,k)/C(m,k)))^8: 99.6% at p = 0.5, k = 1 with no
// colluder; with one colluder of five (n = 6) 98.3%, of nine (n = 10)
// 99.0%; during probation (p = 0.75) above 99.9%. Checks cost p·k rounds
// of re-execution per round of training (a check costs about what the
// round cost to train): 50% after probation, 75% during it, at k = 1
// (benchmarks/README.md, "Affordable checks").
//
// # Equivocation and spam
//
// Two signed votes of one kind in one view of one round by one member,
// for different values, are a self-contained proof: gossiped, logged, and
// carried by the next value, which excludes the signer. Messages the engine
// rejects, and junk that only an outsider or a misbehaving member sends (a
// vote from a non-voter, a far-future message from a non-member), are
// marked so that the driver charges their sender (pubsub peer scoring).
// Messages of the next round are kept, bounded, from members only; those
// of later rounds are never kept.
//
// # Assumptions
//
//   - Fewer than a third of each round's voters (the seated members) are
//     Byzantine, for as long as anyone may rely on that round's
//     certificates (as in every BFT protocol whose past voters' keys may
//     later leak).
//   - Signatures cannot be forged (Ed25519 under libp2p peer IDs).
//   - Partial synchrony: after an unknown time (GST) every message between
//     honest nodes arrives within an unknown bound Δ. Gossip may lose
//     messages; nodes re-send their proposals and votes of the current
//     round while it is undecided, a commit timeout after sending them and
//     then at growing intervals (1, 2, 4, 8 commit timeouts: after GST
//     every re-send within Δ of the last one still comes, only later),
//     each re-send a new copy for gossip (package gossip, copies.go);
//     relays forward such copies again (once
//     per half commit timeout: a peer that missed the first copy may be
//     reachable only through them), and nodes answer laggards with
//     commits, which gives Tendermint's gossip property after GST.
//   - The application's step (aggregation, outer optimizer) is
//     deterministic, so every honest node computes the same state.
//
// # Safety
//
// No two honest nodes decide different values for a round, whatever the
// network does. Within a round this is Tendermint's safety: a decision in
// view w means more than two thirds precommitted v in w; any two such
// quorums intersect in more than a third of the voters, so in at least one
// honest voter, which locked v in w and from then on prevotes only v
// unless it sees a proof of lock (more than two thirds of prevotes) for
// another value in a later view, which would again need an honest voter to
// prevote against its lock. Across rounds, the voter set of round r+1 is
// part of round r's decided state, so honest nodes that agree on round r
// agree on who certifies round r+1. Counting an equivocator's both votes
// does not break this (quorums still share an honest voter). A node that
// catches up adopts only states whose certificates check against a chain
// from a state it trusts, so it decides what the quorum decided.
//
// # Deadlines
//
// A round's collection deadline adapts to the members and is agreed: it is
// derived from the certified state, so every honest node holds the same one
// (deadline.go). Each update a value names carries when it reached the
// proposer (UpdateRef.At, ms after the proposer entered the round); the
// decision moves each aggregated member's pace (Member.Pace, hashed into
// the state) half way there, an observation counting for at most twice
// and at least half the pace (none in round 0, whose start each node took
// when it was launched). The deadline is
// clamp(3/2 × the 3/4 quantile of the voters' paces, commit_timeout/2,
// rounds.timeout): the voters', because seats are filled by verified work
// and more than two thirds of them are honest, so a wave of fresh members
// with instant updates cannot drag it below the honest voters' pace. An
// expected member that a decision does not aggregate has its pace moved up
// by half (its update came after the round closed, if at all), so a
// member that keeps missing rounds soon has a pace past the deadline: a
// known straggler, whose update is taken if it is there but not waited
// for. (A proposer's own update is no observation: it reaches its author
// at once, whatever its links. A member with no pace yet is waited for
// until the deadline, so that its pace can be learned.) The view-0 proposer proposes once every
// expected update but the known stragglers' is in, or once the deadline
// has passed and it holds a quorum of the voters' updates; each
// voter's view-0 propose timeout is min(rounds.timeout, 2 × deadline) +
// commit_timeout, so a silent proposer costs about two deadlines, not
// rounds.timeout. Before any pace is known the proposer's own rule holds:
// a quorum, then half the time it took again (at least a commit timeout).
//
// A run with private peers waits for them unless its spec says
// privacy.wait = false: a private peer's update comes at the pace of its
// proofs, seconds, and as a known straggler it would contribute only by
// chance, and a forged proof would be judged only after the run had moved
// on. Each private member is expected in every round and the deadline
// counts its pace in full: 3/2 × the larger of the voters' quantile and
// the slowest private member's pace. The private peers are named in the
// spec, so no fresh identity can stretch the rounds this way; each one
// can, to rounds.timeout at most, which is the price of its contributions.
//
// Expected members whose update of the round the decision does not name
// are reported late (Decided.Late); a straggler is not waited for past
// the deadline. Its update is not wasted: it is taken in the next round
// ("Late updates"). A member with no update aggregated for members.absent
// rounds is dropped.
//
// A Byzantine proposer reports the arrival times. In view 0 a voter
// prevotes nil on a fresh proposal whose times, less the median skew
// between the two nodes' round starts, stray more than two commit timeouts
// from the voter's own arrival times (or from when the proposal reached
// it): a report that singles out one member is refused. What passes (a
// shift of every report at once, or lies in later views, where the nodes'
// clocks of the round may differ for good and no such check is made) moves
// a pace by at most a half up or a quarter down per decision, and the next
// honest observation takes half of it back: with one proposer in three
// lying the same way every turn, paces settle within about 0.92 and 1.2 of
// the honest ones; the deadline stays in [commit_timeout/2,
// rounds.timeout] whatever is said.
// The check is a local judgement (like a referee's ruling): it decides a
// prevote in view 0 only, never whether a certified value applies, so the
// liveness argument below is untouched.
//
// # Late updates
//
// An update of round r−1 that round r−1 did not aggregate (it came after
// the round closed) may be aggregated in round r, with staleness 1
// (late.go). A value of round r names it as late (UpdateRef.Late, in the
// value's ID), instead of its author's update of round r: one update per
// author per value. It is valid when its author is a member of round r
// that was one in round r−1, round r−1's decision named no update of round
// r−1 by it (a late one of round r−2 does not count: each round's work is
// taken at most once), it builds on round r−1's certified state (the Base
// of round r−1's decision) with its author's seed of round r−1, and it
// carries in its author's residual mark, like every update a value names.
// Everything it is checked against is certified, so honest nodes agree on
// it; anything older is stale and dropped. Late updates do not count
// towards the quorums (the voters' and rounds.quorum), which stay about
// the round's own work, and a proposer does not wait for them.
//
// The aggregation applies a late update's delta to θ_r with the same
// weight as the others. A discount would lose for good what it takes off:
// the author's residual (what error feedback sends later) was committed
// when the update was signed, before anyone knew it would be late, so the
// part discounted could not be put back into it; and with staleness at
// most 1 the delta was computed one outer step away from θ_r, a step that
// the robust aggregation bounds like any update. The reference reports
// when the update reached its proposer after the start of its own round
// there (At, a pace observation: a member fast again after being late
// comes back on time), unchecked by voters (their starts of the round
// before are skewed otherwise) and bounded like any report by Members.Next.
//
// The residual chain runs through late updates: the mark moves when an
// update is aggregated, late or not, and every aggregated update carries
// in the mark it found, so no two aggregated updates of one author carry
// in the same mark. A known straggler (its pace past the deadline) whose
// late update is held continues from what that update kept
// (Engine.CarryIn): its next update is kept, not proposed, in its own
// round, and taken late in the next one once the late one is aggregated.
// If the late one is not taken, that update no longer continues the mark
// and is dropped as stale, and the node falls back to the mark. (Gossip
// keeps no order: such an update that reaches a node before the late one
// it continues is dropped there without blame, and re-sent.) Updates
// of round r that round r did not aggregate are carried into round r+1 by
// every node that holds them, and a node re-sends its own late update
// while the round lasts.
//
// A liar gains nothing it could not on time: a late update is signed, so
// only its author sends it; one of round r−2 or older, or a replay of an
// aggregated one, is stale (ignored, not forwarded); one on another base
// is rejected; an on-time update and a late one of one author never go
// into one value, and an author's late versions beyond maxVersions are
// junk, charged to it; a late update's spot-check re-executes it from its
// own round's state (package node), so late work is checked like any.
//
// # Liveness
//
// The run progresses whenever more than two thirds of the voters are honest
// and connected within the deadlines. After GST, view timeouts grow
// linearly (commit_timeout × (view+1)) until they exceed Δ; with the voters
// proposing in turn, within f+1 views an honest voter proposes while every
// honest voter is in its view, its value is valid everywhere (it holds a
// quorum of voters' updates, which honest voters fetch from it if they
// lack them), a locked voter's value comes back with its proof of lock, and
// the round is decided. A round therefore takes at most the training, the
// collection timeout (the view-0 propose timeout, at most rounds.timeout +
// commit_timeout) and f+1 views once the network heals; the simulation
// (sim_test.go) asserts exactly that bound. Members that stop contributing
// are dropped after members.absent rounds (never fewer than f+2, so
// Byzantine proposers in turn cannot starve an honest member out; a
// private peer, whose updates a gate may hold back until the round before
// that, f-1 rounds later: absentFor in members.go), which
// also shrinks the quorum a crashed voter held.
package consensus
