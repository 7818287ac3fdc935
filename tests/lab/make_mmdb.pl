#!/usr/bin/perl
# Writes a MaxMind-format database for the lab: every router link (10.59/16,
# 10.60/16, 10.61/16) in one AS, every server prefix (10.70/15 .. 10.72/16)
# in another, for `trace --asn-db`. Usage: make_mmdb.pl OUT.mmdb
use strict;
use warnings;
use MaxMind::DB::Writer::Tree;

my $out = shift or die "usage: $0 OUT.mmdb\n";
my $tree = MaxMind::DB::Writer::Tree->new(
    ip_version            => 4,
    record_size           => 24,
    remove_reserved_networks => 0,   # the lab lives in 10/8
    database_type         => 'mitmwatch-lab-ASN-Country',
    languages             => ['en'],
    description           => { en => 'mitmwatch lab test database' },
    map_key_type_callback => sub {
        my $key = shift;
        return 'uint32' if $key eq 'autonomous_system_number';
        return 'map' if $key eq 'country';
        return 'utf8_string';
    },
);
for my $net ('10.59.0.0/16', '10.60.0.0/16', '10.61.0.0/16') {
    $tree->insert_network($net, { autonomous_system_number => 64500,
        autonomous_system_organization => 'Lab Transit', country => { iso_code => 'KZ' } });
}
for my $net ('10.70.0.0/15', '10.72.0.0/16') {
    $tree->insert_network($net, { autonomous_system_number => 64501,
        autonomous_system_organization => 'Lab Hosting', country => { iso_code => 'NL' } });
}
open my $fh, '>:raw', $out or die "$out: $!\n";
$tree->write_tree($fh);
close $fh;
