/**
 * Loads a realistic catalog straight into the catalog plugin's tables: a category tree of about 200
 * nodes and (by default) 100,000 products from a deterministic generator (brands, adjectives,
 * product types, colors, sizes, materials; prices by type), in batches through `db.insertMany`.
 *
 *   DATABASE_URL=sqlite:./data/tessera.db bun scripts/seed-catalog.ts [--count 100000] [--reset]
 *   DATABASE_URL=postgres://postgres@127.0.0.1:5432/test?schema=shop bun scripts/seed-catalog.ts
 *
 * The same arguments give the same catalog. Running it again adds only what is missing (categories
 * by slug, products by SKU `SEED-000001`…); `--reset` first deletes every product and category.
 * Stock is not seeded: availability (`inStock`) comes from inventory's `inventory.stock.changed`
 * events, so create inventory items with these SKUs and adjust their stock to see it.
 */
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { type SQL, sql } from 'drizzle-orm'
import { openDatabase } from '../kernel/db'
import { materialize } from '../kernel/db/schema'
import { schema } from '../plugins/catalog/schema'

const MIGRATIONS = join(import.meta.dir, '..', 'plugins', 'catalog', 'migrations')
const BATCH = 5000
/** Products are dated over the year before this instant, so the seed is the same on every run. */
const EPOCH = Date.UTC(2026, 0, 1)
const YEAR_MS = 365 * 24 * 3600 * 1000

// ------------------------------------------------------------------------------------------------
// vocabulary: department → group → product types, each type with a price range (minor units)
// ------------------------------------------------------------------------------------------------

type Kind = 'apparel' | 'footwear' | 'gear'
interface TypeSpec {
  name: string
  min: number
  max: number
}
const T = (name: string, min: number, max: number): TypeSpec => ({ name, min: min * 100, max: max * 100 })

const TREE: Record<string, { kind: Kind; brands: string[]; groups: Record<string, TypeSpec[]> }> = {
  Electronics: {
    kind: 'gear',
    brands: ['Voltra', 'Nimbus', 'Kestrel', 'Orbitek', 'Lumen', 'Arcadia', 'Quanta', 'Helix'],
    groups: {
      Computers: [T('laptop', 399, 2499), T('ultrabook', 799, 2999), T('chromebook', 199, 599), T('desktop computer', 499, 2999), T('tablet', 149, 1299)],
      Phones: [T('smartphone', 149, 1499), T('phone case', 9, 49), T('wireless charger', 19, 79), T('power bank', 19, 99)],
      Audio: [T('headphones', 29, 449), T('earbuds', 19, 299), T('bluetooth speaker', 29, 399), T('soundbar', 99, 899), T('turntable', 149, 999)],
      'TV & Video': [T('television', 249, 3499), T('projector', 199, 2499), T('streaming stick', 29, 99)],
      Cameras: [T('camera', 299, 3999), T('lens', 149, 2499), T('tripod', 19, 299), T('action camera', 99, 499)],
      'Computer accessories': [T('keyboard', 19, 249), T('mouse', 9, 149), T('monitor', 99, 1499), T('webcam', 29, 199), T('usb hub', 9, 79)],
    },
  },
  'Home & Kitchen': {
    kind: 'gear',
    brands: ['Hearthwell', 'Copperleaf', 'Nordhem', 'Casa Viva', 'Ironwood', 'Maison Blanc', 'Kitchella'],
    groups: {
      Cookware: [T('frying pan', 19, 199), T('saucepan', 19, 179), T('dutch oven', 49, 399), T('wok', 19, 149), T('baking tray', 9, 49)],
      Appliances: [T('blender', 29, 499), T('toaster', 19, 249), T('kettle', 19, 199), T('coffee maker', 39, 999), T('air fryer', 49, 299)],
      Tableware: [T('mug', 5, 39), T('dinner plate', 5, 49), T('bowl', 5, 39), T('wine glass', 5, 59), T('cutlery set', 19, 249)],
      Furniture: [T('chair', 49, 899), T('desk', 99, 1299), T('sofa', 399, 3999), T('bookshelf', 49, 799), T('floor lamp', 29, 399)],
      Bedding: [T('pillow', 9, 149), T('duvet', 39, 499), T('blanket', 19, 249), T('sheet set', 29, 299)],
      Storage: [T('storage box', 5, 59), T('laundry basket', 9, 69), T('shoe rack', 19, 149)],
    },
  },
  Clothing: {
    kind: 'apparel',
    brands: ['Northwind', 'Urbanthread', 'Juniper & Co', 'Fjellmark', 'Saltwater', 'Atelier Nove', 'Greyline', 'Wildrose'],
    groups: {
      Men: [T('t-shirt', 9, 59), T('jeans', 29, 149), T('jacket', 59, 399), T('hoodie', 29, 119), T('oxford shirt', 29, 129), T('chinos', 29, 119)],
      Women: [T('dress', 29, 249), T('blouse', 19, 129), T('skirt', 19, 119), T('cardigan', 29, 179), T('leggings', 14, 79)],
      Kids: [T('onesie', 9, 39), T('pajamas', 14, 49), T('rain jacket', 24, 89)],
      Outerwear: [T('parka', 99, 599), T('raincoat', 49, 299), T('down vest', 49, 249), T('fleece', 29, 149)],
      'Clothing accessories': [T('scarf', 9, 129), T('beanie', 9, 49), T('belt', 14, 119), T('gloves', 9, 89), T('socks', 5, 29)],
    },
  },
  Shoes: {
    kind: 'footwear',
    brands: ['Stridewell', 'Terrapin', 'Cobble & Last', 'Aeroform', 'Trailhaus', 'Pacer'],
    groups: {
      Sneakers: [T('sneakers', 39, 249), T('court shoes', 49, 179), T('slip-on shoes', 29, 119)],
      Boots: [T('chelsea boots', 79, 349), T('hiking boots', 89, 329), T('rain boots', 29, 129)],
      'Sandals & slippers': [T('sandals', 19, 149), T('slippers', 14, 79), T('flip-flops', 9, 49)],
      'Formal shoes': [T('loafers', 69, 299), T('oxfords', 79, 399), T('pumps', 49, 299)],
    },
  },
  Sports: {
    kind: 'gear',
    brands: ['Summit', 'Velocity', 'Basecamp', 'Tidewater', 'Ironclad', 'Peakline', 'Racer X'],
    groups: {
      Running: [T('running shoes', 59, 229), T('running shorts', 14, 69), T('running vest', 29, 149), T('sports watch', 99, 799)],
      Cycling: [T('bike helmet', 29, 299), T('bike light', 9, 129), T('cycling jersey', 29, 149), T('bike lock', 14, 119)],
      Camping: [T('tent', 59, 899), T('sleeping bag', 39, 499), T('backpack', 29, 349), T('headlamp', 9, 99), T('camping stove', 29, 199)],
      Fitness: [T('yoga mat', 14, 129), T('dumbbell', 9, 199), T('kettlebell', 14, 149), T('resistance band', 5, 49), T('jump rope', 5, 39)],
      'Water sports': [T('swimsuit', 19, 119), T('swim goggles', 9, 59), T('wetsuit', 79, 499), T('paddle board', 299, 1299)],
      'Team sports': [T('football', 14, 149), T('basketball', 14, 129), T('tennis racket', 29, 299)],
    },
  },
  'Toys & Games': {
    kind: 'gear',
    brands: ['Brickfield', 'Playwise', 'Little Oak', 'Tumbletown', 'Gamesmith'],
    groups: {
      'Building toys': [T('building set', 9, 399), T('wooden blocks', 14, 79), T('marble run', 19, 129)],
      Puzzles: [T('jigsaw puzzle', 9, 59), T('3d puzzle', 14, 89), T('puzzle cube', 5, 39)],
      'Board games': [T('board game', 14, 129), T('card game', 5, 39), T('strategy game', 24, 149)],
      'Outdoor toys': [T('kite', 9, 79), T('water blaster', 9, 49), T('scooter', 39, 249), T('trampoline', 149, 999)],
    },
  },
  Beauty: {
    kind: 'gear',
    brands: ['Lumière', 'Verdant', 'Aqualis', 'Rosehip Lab', 'Botanica'],
    groups: {
      Skincare: [T('moisturizer', 9, 129), T('serum', 14, 149), T('cleanser', 7, 49), T('sunscreen', 7, 49), T('face mask', 5, 39)],
      'Hair care': [T('shampoo', 4, 39), T('conditioner', 4, 39), T('hair dryer', 29, 449), T('hair straightener', 29, 249)],
      Makeup: [T('lipstick', 7, 49), T('mascara', 7, 39), T('foundation', 9, 59), T('eyeshadow palette', 9, 79)],
      Fragrance: [T('eau de parfum', 29, 249), T('body mist', 9, 49)],
    },
  },
  Garden: {
    kind: 'gear',
    brands: ['Greenthumb', 'Fernhill', 'Rootstock', 'Meadowlark'],
    groups: {
      'Garden tools': [T('spade', 14, 99), T('pruning shears', 9, 79), T('rake', 9, 59), T('garden hose', 19, 129), T('wheelbarrow', 49, 249)],
      Plants: [T('seed kit', 4, 29), T('planter', 9, 149), T('raised bed', 49, 399)],
      'Outdoor living': [T('parasol', 29, 399), T('sun lounger', 49, 599), T('barbecue grill', 99, 1499), T('fire pit', 79, 599)],
    },
  },
  Office: {
    kind: 'gear',
    brands: ['Inkwell', 'Papercraft', 'Deskwise', 'Ledger & Quill'],
    groups: {
      Stationery: [T('notebook', 3, 39), T('fountain pen', 9, 249), T('pencil set', 3, 29), T('planner', 9, 49)],
      'Desk organization': [T('desk organizer', 9, 69), T('binder', 3, 19), T('file cabinet', 79, 399), T('monitor stand', 19, 149)],
      'Office furniture': [T('office chair', 99, 1299), T('standing desk', 249, 1499), T('desk lamp', 19, 199)],
    },
  },
  Pets: {
    kind: 'gear',
    brands: ['Pawsome', 'Whisker & Wag', 'Tailwind', 'Furrytale'],
    groups: {
      Dogs: [T('dog bed', 24, 249), T('dog leash', 9, 59), T('dog food', 14, 99), T('chew toy', 4, 29), T('dog harness', 14, 89)],
      Cats: [T('cat tree', 39, 349), T('cat litter', 7, 39), T('cat toy', 3, 24), T('scratching post', 14, 99)],
      'Small pets': [T('hamster cage', 29, 199), T('aquarium', 39, 599), T('bird feeder', 9, 79)],
    },
  },
  Grocery: {
    kind: 'gear',
    brands: ['Harvest Lane', 'Golden Mill', 'Bluebird Farm', 'Terra Verde'],
    groups: {
      'Coffee & tea': [T('coffee beans', 6, 39), T('ground coffee', 5, 29), T('green tea', 3, 24), T('herbal tea', 3, 19)],
      Snacks: [T('chocolate bar', 1, 9), T('granola', 3, 12), T('trail mix', 3, 14), T('crackers', 2, 9)],
      Pantry: [T('olive oil', 5, 39), T('pasta', 1, 9), T('honey', 4, 29), T('spice set', 9, 59)],
    },
  },
}

const ADJECTIVES = [
  'classic', 'compact', 'premium', 'lightweight', 'heavy-duty', 'ergonomic', 'vintage', 'modern', 'slim', 'deluxe',
  'portable', 'foldable', 'rugged', 'minimalist', 'eco', 'organic', 'smart', 'wireless', 'quiet', 'ultra',
  'waterproof', 'breathable', 'insulated', 'handmade', 'everyday', 'pro', 'essential', 'adjustable', 'stackable', 'cozy',
]
const COLORS = ['black', 'white', 'grey', 'navy', 'red', 'green', 'olive', 'blue', 'beige', 'brown', 'pink', 'yellow', 'orange', 'purple', 'teal', 'silver']
const MATERIALS: Record<Kind, string[]> = {
  apparel: ['cotton', 'organic cotton', 'wool', 'merino wool', 'linen', 'recycled polyester', 'nylon', 'denim'],
  footwear: ['leather', 'suede', 'canvas', 'recycled polyester', 'mesh', 'rubber'],
  gear: ['stainless steel', 'aluminium', 'bamboo', 'oak', 'ceramic', 'glass', 'nylon', 'silicone', 'cast iron', 'recycled plastic'],
}
const SIZES: Record<Kind, string[]> = {
  apparel: ['XS', 'S', 'M', 'L', 'XL', 'XXL'],
  footwear: ['36', '37', '38', '39', '40', '41', '42', '43', '44', '45', '46'],
  gear: ['small', 'medium', 'large', 'one size'],
}
const FEATURES = [
  'built to last for years of daily use',
  'easy to clean and quick to dry',
  'designed with feedback from professionals',
  'backed by a two-year warranty',
  'made from responsibly sourced materials',
  'packs down small for travel',
  'a favourite gift for every season',
  'tested for comfort over long days',
  'finished by hand in small batches',
  'energy efficient and quiet in use',
  'comes with a soft carry pouch',
  'fits neatly on any shelf',
]
const USES = ['at home', 'at the office', 'on the trail', 'in the kitchen', 'on the go', 'for weekends away', 'for the whole family', 'in every weather']

/** Words a shopper would type into this catalog, for benchmarks. */
export function vocabulary() {
  const tree = categoryTree()
  return {
    types: [...new Set(tree.leaves.map((l) => l.type.name))],
    brands: [...new Set(Object.values(TREE).flatMap((d) => d.brands))],
    colors: COLORS,
    adjectives: ADJECTIVES,
    departments: tree.categories.filter((c) => c.parentSlug === null).map((c) => c.slug),
    groups: tree.categories.filter((c) => c.parentSlug !== null && tree.categories.some((x) => x.parentSlug === c.slug)).map((c) => c.slug),
    leaves: tree.leaves.map((l) => l.slug),
  }
}

// ------------------------------------------------------------------------------------------------
// the generator
// ------------------------------------------------------------------------------------------------

/** mulberry32: a small, fast, seeded PRNG, so every run yields the same catalog. */
function prng(seed: number) {
  let a = seed >>> 0
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  return { next, int: (min: number, max: number) => min + Math.floor(next() * (max - min + 1)), pick: <V>(xs: readonly V[]) => xs[Math.floor(next() * xs.length)]! }
}

const slugify = (s: string) =>
  s
    .toLowerCase()
    .replace(/&/g, 'and')
    .normalize('NFKD')
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '')
const title = (s: string) => s.replace(/(^|[\s-])\p{L}/gu, (m) => m.toUpperCase())

interface SeedCategory {
  slug: string
  name: string
  parentSlug: string | null
}
interface Leaf {
  slug: string
  kind: Kind
  brands: string[]
  type: TypeSpec
}

/** The tree: departments, their groups, and one leaf per product type. */
export function categoryTree(): { categories: SeedCategory[]; leaves: Leaf[] } {
  const categories: SeedCategory[] = []
  const leaves: Leaf[] = []
  for (const [department, spec] of Object.entries(TREE)) {
    const dept = slugify(department)
    categories.push({ slug: dept, name: department, parentSlug: null })
    for (const [group, types] of Object.entries(spec.groups)) {
      const groupSlug = `${dept}-${slugify(group)}`
      categories.push({ slug: groupSlug, name: group, parentSlug: dept })
      for (const type of types) {
        const slug = `${groupSlug}-${slugify(type.name)}`
        categories.push({ slug, name: title(type.name), parentSlug: groupSlug })
        leaves.push({ slug, kind: spec.kind, brands: spec.brands, type })
      }
    }
  }
  return { categories, leaves }
}

export interface SeedProduct {
  sku: string
  name: string
  description: string
  price: number
  categorySlug: string
  attributes: Record<string, unknown>
  active: boolean
  createdAt: Date
}

/** Product number `i` (0-based) of a catalog of `count`: the same every time. */
export function productAt(i: number, count: number, leaves: Leaf[]): SeedProduct {
  const r = prng(0x5eed + i * 7919)
  const leaf = leaves[Math.floor(r.next() * leaves.length)]!
  const brand = r.pick(leaf.brands)
  const adjective = r.pick(ADJECTIVES)
  const color = r.pick(COLORS)
  const material = r.pick(MATERIALS[leaf.kind])
  const size = r.pick(SIZES[leaf.kind])
  const model = r.next() < 0.4 ? ` ${String.fromCharCode(65 + r.int(0, 25))}${r.int(1, 9) * 100}` : ''
  const name = `${brand} ${title(adjective)} ${title(leaf.type.name)}${model} – ${title(color)}`
  const description =
    `${/^[aeiou]/.test(adjective) ? 'An' : 'A'} ${adjective} ${color} ${leaf.type.name} in ${material} by ${brand}, ${r.pick(FEATURES)}. ` +
    `Perfect ${r.pick(USES)}; ${r.pick(FEATURES)}.`
  // Prices skewed towards the cheap end of the type's range, ending in .99 or .49.
  const raw = leaf.type.min + (leaf.type.max - leaf.type.min) * r.next() ** 2
  const price = Math.max(99, Math.floor(raw / 100) * 100 + (r.next() < 0.7 ? 99 : 49))
  return {
    sku: `SEED-${String(i + 1).padStart(6, '0')}`,
    name,
    description,
    price,
    categorySlug: leaf.slug,
    attributes: { brand, color, size, material },
    active: r.next() >= 0.03,
    createdAt: new Date(EPOCH - YEAR_MS + Math.floor((YEAR_MS * i) / count)),
  }
}

/** Seeds `databaseUrl`; returns how many categories and products were added. */
export async function seedCatalog(
  databaseUrl: string,
  options: {
    count: number
    reset?: boolean
    log?: (line: string) => void
    /**
     * Benchmarks only: writes the stock projection as if inventory had announced stock for most
     * SKUs, so that `inStock` filters have something to find. Never used by the command line.
     */
    simulateStock?: boolean
  },
) {
  const log = options.log ?? (() => {})
  const db = openDatabase(databaseUrl)
  try {
    await db.migrate(join(MIGRATIONS, db.dialect), '__migrations_catalog')
    const { categories, products, stock } = materialize(schema, db.dialect)
    if (options.reset) {
      await db.transaction(async (tx) => {
        await tx.delete(products)
        await tx.delete(categories)
        if (options.simulateStock) await tx.delete(stock)
      })
      log('reset: every product and category deleted')
    }

    const tree = categoryTree()
    const now = new Date(EPOCH)
    // Parents first, so each level can name the ids of the one above.
    const ids = new Map<string, string>()
    const readIds = async () => {
      for (const row of await db.read.select({ id: categories.id, slug: categories.slug }).from(categories)) ids.set(row.slug, row.id)
    }
    await readIds()
    let addedCategories = 0
    for (let level = 0; level < 3; level++) {
      const depth = (c: SeedCategory): number => (c.parentSlug === null ? 0 : 1 + depth(tree.categories.find((p) => p.slug === c.parentSlug)!))
      const rows = tree.categories
        .filter((c) => depth(c) === level && !ids.has(c.slug))
        .map((c) => ({ id: Bun.randomUUIDv7(), slug: c.slug, name: c.name, parentId: c.parentSlug ? ids.get(c.parentSlug)! : null, createdAt: now, updatedAt: now }))
      addedCategories += (await db.insertMany(categories, rows, { onConflictDoNothing: true, returning: 'id' })).length
      await readIds()
    }
    log(`categories: ${tree.categories.length} in the tree, ${addedCategories} added`)

    let addedProducts = 0
    const started = performance.now()
    for (let from = 0; from < options.count; from += BATCH) {
      const rows = []
      const levels = []
      for (let i = from; i < Math.min(options.count, from + BATCH); i++) {
        const p = productAt(i, options.count, tree.leaves)
        // Four in five SKUs in stock, the rest sold out.
        const available = options.simulateStock && i % 5 !== 0 ? 1 + (i % 37) : 0
        if (options.simulateStock) levels.push({ sku: p.sku, warehouse: 'SIM', available, eventId: '0' })
        rows.push({
          id: Bun.randomUUIDv7(),
          sku: p.sku,
          name: p.name,
          description: p.description,
          price: p.price,
          currency: 'EUR',
          categoryId: ids.get(p.categorySlug) ?? null,
          attributes: p.attributes,
          active: p.active,
          available,
          createdAt: p.createdAt,
          updatedAt: p.createdAt,
        })
      }
      addedProducts += (await db.insertMany(products, rows, { onConflictDoNothing: true, returning: 'id' })).length
      await db.insertMany(stock, levels, { onConflictDoNothing: true })
      log(`products: ${Math.min(options.count, from + BATCH)} / ${options.count} (${((performance.now() - started) / 1000).toFixed(1)} s)`)
    }
    // Stock inventory announced earlier (for SKUs seeded again after --reset) counts at once.
    const total = sql<number>`(select coalesce(sum(${stock.available}), 0) from ${stock} where ${stock.sku} = ${products.sku})`
    await db.transaction((tx) =>
      tx
        .update(products)
        .set({ available: total })
        .where(sql`${products.sku} in (select ${stock.sku} from ${stock}) and ${products.available} <> ${total}`),
    )
    // Fresh planner statistics: the right index for each filter from the first query on.
    // (catalog_search: the narrow copy relevance ranking reads on PostgreSQL, see plugins/catalog/search.ts.)
    if (db.dialect === 'postgres') await db.transaction((tx) => tx.execute(sql`analyze catalog_products, catalog_categories, catalog_search`))
    else await db.transaction(async (tx) => void (await (tx as unknown as { run(query: SQL): Promise<unknown> }).run(sql`analyze`)))
    return { categories: addedCategories, products: addedProducts }
  } finally {
    await db.close()
  }
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { count: { type: 'string', default: '100000' }, reset: { type: 'boolean', default: false } } })
  const count = Number(values.count)
  if (!Number.isInteger(count) || count < 0) {
    console.error('--count must be a whole number')
    process.exit(2)
  }
  const url = process.env.DATABASE_URL || 'sqlite:./data/tessera.db'
  const t0 = performance.now()
  const added = await seedCatalog(url, { count, reset: values.reset, log: (line) => console.log(line) })
  console.log(`done in ${((performance.now() - t0) / 1000).toFixed(1)} s: ${added.categories} categories and ${added.products} products added to ${url.replace(/\/\/[^@]*@/, '//')}`)
}
