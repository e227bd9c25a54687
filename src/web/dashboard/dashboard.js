// The sale dashboard. It uses the public API as any client does: the running sales over HTTP, their live stock
// from promotionStock over one graphql-ws socket, and, with an admin token typed in, the admin queries over HTTP.
// The token lives in this script's memory only: never in the URL, storage, cookies or the socket.
(function () {
  'use strict';

  const MAX_WATCHED = 10; // sales charted at once, one subscription each on one socket (WS_MAX_SUBSCRIPTIONS: 20)
  const WINDOW_MS = 5 * 60_000; // the charts show the last five minutes at most
  const MIN_SPAN_MS = 60_000; // and a minute at least, so a fresh page does not stretch its first seconds
  const TICK_MS = 1000; // charts redrawn; a second without an update is recorded as such (no change, rate 0)
  const RATE_SPAN_MS = 1000; // the issue rate: units taken over the last second
  const LIST_EVERY_MS = 10_000; // the running sales re-read: new ones appear, ended ones go
  const REOPEN_EVERY_MS = 5000; // a sold-out sale is subscribed again this often: added stock reopens it
  const ADMIN_EVERY_MS = 5000; // audit terms, backlog and dead letters re-read while a token is set (the audit counts rows)
  const PAGE_SIZE = 20;

  const FIELDS = 'id name status remainingStock totalStock issuedCount startsAt endsAt';
  const SALES_QUERY = `query DashboardSales($first: Int!) {
    active: promotions(status: ACTIVE, first: $first) { ${FIELDS} }
    scheduled: promotions(status: SCHEDULED, first: $first) { ${FIELDS} }
  }`;
  const PAGE_QUERY = `query DashboardPromotions($first: Int!, $after: ID) { promotions(first: $first, after: $after) { ${FIELDS} } }`;
  const STOCK_SUBSCRIPTION = 'subscription DashboardStock($id: ID!) { promotionStock(promotionId: $id) { promotionId remainingStock status at } }';
  const AUDIT_FRAGMENTS = `fragment Terms on PromotionAudit { totalStock remainingStock persisted inFlight failed holds checkedAt }
    fragment Letter on DeadLetter { requestId userId reason deliveries failedAt }`;
  const AUDIT_TERMS = ['holds', 'totalStock', 'remainingStock', 'persisted', 'inFlight', 'failed', 'checkedAt'];

  const $ = (selector, root = document) => root.querySelector(selector);
  const number = (n) => n.toLocaleString('en-US');
  const time = (iso) => new Date(iso).toLocaleTimeString('en-GB');
  const dateTime = (iso) => new Date(iso).toLocaleString('en-GB', { dateStyle: 'medium', timeStyle: 'short' });

  function show(element, text) {
    element.textContent = text ?? '';
    element.hidden = !text;
  }

  /** One line for what failed: GraphQL errors (with their code), a socket's close, or anything thrown. */
  function describe(error) {
    if (Array.isArray(error)) return error.map(describe).join('; ');
    if (error && typeof error.code === 'number') return `connection closed (${error.code}${error.reason ? `: ${error.reason}` : ''})`;
    const code = error?.extensions?.code;
    const message = error?.message ?? String(error);
    return code ? `${code}: ${message}` : message;
  }

  async function post(query, variables, token) {
    const headers = { 'content-type': 'application/json' };
    if (token) headers.authorization = `Bearer ${token}`;
    const response = await fetch('/graphql', { method: 'POST', headers, body: JSON.stringify({ query, variables }) });
    const body = await response.json().catch(() => null);
    if (!body) throw new Error(`HTTP ${response.status}`);
    return body;
  }

  // ---- the socket: graphql-ws retries with backoff and re-subscribes every running subscription on reconnect

  let connected = false;
  const connection = $('#connection');
  function setConnection(state, text) {
    connection.dataset.state = state;
    connection.textContent = text;
  }
  const client = window.graphqlWs.createClient({
    url: `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/graphql`,
    lazyCloseTimeout: 30_000,
    retryAttempts: Infinity,
    shouldRetry: () => true,
    // 1 s, 2 s, 4 s … up to 30 s, each drawn between half and all of it, so a restarted server is not stampeded.
    retryWait: (retries) => new Promise((resolve) => setTimeout(resolve, Math.min(30_000, 1000 * 2 ** retries) * (0.5 + Math.random() / 2))),
    on: {
      connecting: () => setConnection('connecting', 'connecting…'),
      connected: () => {
        connected = true;
        setConnection('live', 'live');
      },
      closed: () => {
        connected = false;
        const waiting = [...watches.values()].some((w) => w.dispose);
        setConnection(waiting ? 'reconnecting' : 'idle', waiting ? 'reconnecting…' : 'idle');
      },
    },
  });

  // ---- one sale: its card, its live stock and the series the charts draw

  const watches = new Map();
  const cards = $('#cards');

  class Watch {
    constructor(promotion) {
      this.id = promotion.id;
      this.card = $('#card-template').content.firstElementChild.cloneNode(true);
      this.card.dataset.promotionId = promotion.id;
      cards.append(this.card);
      this.stock = [];
      this.rates = [];
      this.backlog = [];
      this.remaining = null;
      this.dispose = null;
      this.nextTry = 0;
      this.failures = 0;
      this.setStatus(promotion.status);
      this.setInfo(promotion);
    }

    /** What the list says; the status only until the live feed speaks, since the list is read less often. */
    setInfo(promotion) {
      $('.name', this.card).textContent = promotion.name;
      this.total = promotion.totalStock;
      $('.total', this.card).textContent = ` of ${number(promotion.totalStock)}`;
      if (this.remaining === null) this.setStatus(promotion.status);
    }

    setStatus(status) {
      this.status = status;
      this.card.dataset.status = status;
      $('.status', this.card).textContent = status;
    }

    subscribe() {
      if (this.dispose || this.status === 'ENDED') return;
      this.dispose = client.subscribe({ query: STOCK_SUBSCRIPTION, variables: { id: this.id } }, {
        next: (result) => {
          if (result.errors) return this.fail(result.errors);
          this.failures = 0;
          show($('.card-error', this.card), null);
          this.record(result.data.promotionStock);
        },
        error: (error) => {
          this.dispose = null;
          this.fail(error);
        },
        // Sold out or ended. Only a sold-out sale may reopen (stock added): it is subscribed again later. A feed
        // that ends while its sale is open (a server going away, say) is subscribed again at once.
        complete: () => {
          this.dispose = null;
          const wait = this.status === 'SOLD_OUT' ? REOPEN_EVERY_MS : TICK_MS;
          this.nextTry = Math.max(this.nextTry, Date.now() + wait);
        },
      });
    }

    fail(error) {
      this.failures += 1;
      this.nextTry = Date.now() + Math.min(30_000, 1000 * 2 ** this.failures);
      show($('.card-error', this.card), describe(error));
    }

    record(update) {
      this.remaining = update.remainingStock;
      this.setStatus(update.status);
      const remaining = $('.remaining', this.card);
      remaining.textContent = number(update.remainingStock);
      remaining.dataset.remaining = String(update.remainingStock);
      remaining.title = `read at ${time(update.at)}`;
      this.push(Date.now(), update.remainingStock);
    }

    /** A point of remaining stock, and the issue rate it makes: what was taken since one second before it. */
    push(t, v) {
      const base = [...this.stock].reverse().find((p) => p.t <= t - RATE_SPAN_MS) ?? this.stock[0];
      this.stock.push({ t, v });
      if (!base) return;
      const rate = Math.max(0, base.v - v) / (Math.max(RATE_SPAN_MS, t - base.t) / 1000);
      this.rates.push({ t, v: rate });
      const shown = $('.rate', this.card);
      shown.textContent = window.Charts.short(rate);
      shown.dataset.rate = String(rate);
    }

    tick(now) {
      // A quiet second on a live feed is a point too: the line goes on and the rate falls to 0.
      const last = this.stock[this.stock.length - 1];
      if (this.dispose && connected && last && now - last.t >= TICK_MS) this.push(now, last.v);
      if (!this.dispose && this.status !== 'ENDED' && now >= this.nextTry) this.subscribe();
      for (const series of [this.stock, this.rates, this.backlog]) {
        while (series.length > 2 && series[1].t < now - WINDOW_MS - RATE_SPAN_MS) series.shift();
      }
      const first = this.stock[0]?.t ?? now;
      const from = Math.min(now - MIN_SPAN_MS, Math.max(now - WINDOW_MS, first));
      window.Charts.draw($('.stock-chart', this.card), this.stock, { from, to: now, floor: this.total });
      window.Charts.draw($('.rate-chart', this.card), this.rates, { from, to: now, floor: 1 });
      if (!$('.admin', this.card).hidden) window.Charts.draw($('.backlog-chart', this.card), this.backlog, { from, to: now, floor: 1 });
    }

    showAdmin(audit, letters) {
      const panel = $('.admin', this.card);
      panel.hidden = false;
      if (audit) {
        const terms = $('.audit', this.card);
        terms.replaceChildren();
        for (const term of AUDIT_TERMS) {
          const value = audit[term];
          const dd = document.createElement('dd');
          dd.dataset.term = term;
          dd.textContent = term === 'checkedAt' ? time(value) : typeof value === 'number' ? number(value) : String(value);
          const dt = document.createElement('dt');
          dt.textContent = term;
          terms.append(dt, dd);
        }
        const holds = $('.holds', this.card);
        holds.textContent = audit.holds ? 'holds' : 'DOES NOT HOLD';
        holds.dataset.holds = String(audit.holds);
        const backlog = $('.backlog', this.card);
        backlog.textContent = number(audit.inFlight);
        backlog.dataset.backlog = String(audit.inFlight);
        this.backlog.push({ t: Date.now(), v: audit.inFlight });
      }
      if (letters) {
        $('.dead-count', this.card).textContent = letters.length ? `(newest ${letters.length})` : '(none)';
        const rows = letters.map((letter) => {
          const row = document.createElement('tr');
          row.dataset.requestId = letter.requestId;
          for (const text of [dateTime(letter.failedAt), letter.userId, String(letter.deliveries), letter.reason, letter.requestId]) {
            const cell = document.createElement('td');
            cell.textContent = text;
            row.append(cell);
          }
          return row;
        });
        $('.dead-letters tbody', this.card).replaceChildren(...rows);
      }
    }

    hideAdmin() {
      $('.admin', this.card).hidden = true;
      this.backlog = [];
    }

    close() {
      if (this.dispose) this.dispose();
      this.dispose = null;
      this.card.remove();
    }
  }

  // ---- which sales are watched: the running and scheduled ones, and sold-out ones already shown (they may reopen)

  const pageError = $('#error');

  async function refreshSales() {
    let data;
    try {
      const body = await post(SALES_QUERY, { first: MAX_WATCHED });
      if (body.errors) throw body.errors;
      data = body.data;
    } catch (error) {
      return show(pageError, `Could not read the sales: ${describe(error)}`);
    }
    show(pageError, null);
    const keep = new Map();
    for (const promotion of [...data.active, ...data.scheduled]) if (keep.size < MAX_WATCHED) keep.set(promotion.id, promotion);
    for (const [id, watch] of watches) if (!keep.has(id) && watch.status === 'SOLD_OUT' && keep.size < MAX_WATCHED) keep.set(id, null);
    for (const [id, watch] of watches) {
      if (keep.has(id)) continue;
      watch.close();
      watches.delete(id);
    }
    for (const [id, promotion] of keep) {
      const watch = watches.get(id);
      if (watch && promotion) watch.setInfo(promotion);
      if (watch) continue;
      const added = new Watch(promotion);
      watches.set(id, added);
      added.subscribe();
    }
    $('#no-sales').hidden = watches.size > 0;
    void refreshAdmin();
  }

  // ---- every promotion, newest first, a page at a time (keyset: `after` is the last id shown)

  let lastShown = null;
  let paged = false; // once the reader asks for more, the first page is no longer re-read under them
  let loads = 0;

  async function loadPage(first) {
    const load = ++loads;
    let page;
    try {
      const body = await post(PAGE_QUERY, { first: PAGE_SIZE, after: first ? null : lastShown });
      if (body.errors) throw body.errors;
      page = body.data.promotions;
    } catch (error) {
      return show(pageError, `Could not read the promotions: ${describe(error)}`);
    }
    if (first && (paged || load !== loads)) return; // a newer load, or the reader paged on meanwhile
    const rows = page.map((p) => {
      const row = document.createElement('tr');
      row.dataset.promotionId = p.id;
      for (const text of [p.name, p.status, number(p.remainingStock), number(p.totalStock), number(p.issuedCount), dateTime(p.startsAt), dateTime(p.endsAt)]) {
        const cell = document.createElement('td');
        cell.textContent = text;
        row.append(cell);
      }
      return row;
    });
    const body = $('#promotion-list tbody');
    if (first) body.replaceChildren(...rows);
    else body.append(...rows);
    if (page.length) lastShown = page[page.length - 1].id;
    $('#more').hidden = page.length < PAGE_SIZE;
  }

  // ---- admin: audit terms, backlog and dead letters of the watched sales, in one request

  let adminToken = null;
  let adminRefused = false;
  const adminError = $('#admin-error');

  async function refreshAdmin() {
    const token = adminToken;
    const ids = [...watches.keys()];
    if (!token || adminRefused || !ids.length) return;
    const variables = {};
    const fields = ids.map((id, i) => {
      variables[`p${i}`] = id;
      return `a${i}: promotionAudit(id: $p${i}) { ...Terms } d${i}: deadLetters(promotionId: $p${i}) { ...Letter }`;
    });
    const query = `query DashboardAdmin(${ids.map((_, i) => `$p${i}: ID!`).join(', ')}) { ${fields.join(' ')} } ${AUDIT_FRAGMENTS}`;
    let body;
    try {
      body = await post(query, variables, token);
    } catch (error) {
      return show(adminError, `Could not read the admin data: ${describe(error)}`);
    }
    if (token !== adminToken) return; // forgotten or replaced meanwhile
    const errors = body.errors ?? [];
    const refusal = errors.find((e) => e.extensions?.code === 'UNAUTHENTICATED' || e.extensions?.code === 'FORBIDDEN');
    if (refusal) {
      adminRefused = true;
      for (const watch of watches.values()) watch.hideAdmin();
      return show(adminError, `${describe(refusal)} (an admin token is needed)`);
    }
    show(adminError, errors.length ? describe(errors) : null);
    ids.forEach((id, i) => watches.get(id)?.showAdmin(body.data?.[`a${i}`], body.data?.[`d${i}`]));
  }

  $('#admin-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const input = $('#admin-token');
    const token = input.value.trim().replace(/^Bearer\s+/i, '');
    input.value = '';
    if (!token) return;
    adminToken = token;
    adminRefused = false;
    input.placeholder = 'token set (in memory only)';
    show(adminError, null);
    void refreshAdmin();
  });

  $('#admin-forget').addEventListener('click', () => {
    adminToken = null;
    $('#admin-token').placeholder = "kept in this tab's memory only";
    show(adminError, null);
    for (const watch of watches.values()) watch.hideAdmin();
  });

  $('#more').addEventListener('click', (event) => {
    paged = true;
    event.target.hidden = true; // shown again when the page that comes is full
    void loadPage(false);
  });

  function tick() {
    const now = Date.now();
    for (const watch of watches.values()) watch.tick(now);
  }

  void refreshSales().then(tick);
  void loadPage(true);
  setInterval(tick, TICK_MS);
  setInterval(() => {
    void refreshSales();
    if (!paged) void loadPage(true); // kept fresh until the reader pages on
  }, LIST_EVERY_MS);
  setInterval(() => void refreshAdmin(), ADMIN_EVERY_MS);
})();
