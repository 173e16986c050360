function [Y,Xf,Af] = cascade3_cell_rows(X,~,~)
%CASCADE3_CELL_ROWS neural network simulation function.
%
% Written by tools/make_matlab_fixtures.py in the format MATLAB's genFunction writes, with the
% weights of a net the script defines: not MATLAB's own output (no MATLAB is available here).
%
% [Y] = cascade3_cell_rows(X,~,~) takes these arguments:
%
%   X = 1xTS cell, 1 inputs over TS timesteps
%   Each X{1,ts} = Qx4 matrix, input #1 at timestep ts.
%
% and returns:
%   Y = 1xTS cell of 1 outputs over TS timesteps.
%   Each Y{1,ts} = Qx2 matrix, output #1 at timestep ts.
%
% where Q is number of samples (or series) and TS is the number of timesteps.

%#ok<*RPMT0>

% ===== NEURAL NETWORK CONSTANTS =====

% Input 1
x1_step1.xoffset = [-1.7701398598566525;-1.2153764270530028;-1.0045978803969824;-2.0499719014275946];
x1_step1.gain = [1.2696037078927012;1.433070973702465;2.1568665586517883;1.9279677704096778];
x1_step1.ymin = [-1.0];

% Layer 1
b1 = [-0.4469923804928859;0.5916199610572122;-0.412427450506327;0.868836221917618;-0.4504003058107888];
IW1_1 = [-0.8409649128075639 0.293405455735983 -1.2338085872959272 0.7437729353560443;-0.2603608572627713 -0.7310993997164111 -0.7287000655787459 1.1245846413098306;0.22640937658758184 -0.46514273022246955 -0.664699164547544 -0.521348034704505;-0.7935012278046174 0.5949621285983941 -0.23675531232304126 -1.1483185237369995;0.8381280834201684 0.7683950817261079 0.019528908638179604 -0.5324875863684027];

% Layer 2
b2 = [0.7772506612073833;-0.02275748074518713;-0.47938433483809817;-0.4339500698305532];
IW2_1 = [0.12849364432012467 0.21249551205529094 0.35226361281110885 -1.66796607889692;-1.3587907058225188 0.166684003745177 0.043285550322464936 0.4091048760380256;-0.06341383714784542 -0.05722025812495323 0.23311220179067013 0.5466523973402998;1.553127164281363 -0.5421098787425668 -0.06372446956059637 0.15829774267344404];
LW2_1 = [-0.11978453248811947 0.2937125732206162 -1.4732412669774635 -0.17348079755188728 -2.112494293704825;-0.02621618258353759 -0.5147144710424579 -0.7374368527288335 -0.9726115127199029 0.5792993469626353;0.17910578381040532 1.4022609356904683 0.6590475545340069 1.0457184945051492 -0.8144621604320298;-0.20056073190416202 1.3612963911170608 0.6685275317389765 0.32690982226711524 -0.3858365301893656];

% Layer 3
b3 = [0.8859195252839898;0.6537386741297142];
IW3_1 = [-0.7689569804915806 -1.5123447683936617 1.0336849873200034 0.9764193045315859;0.9100961745151264 -2.5557606949692597 1.5114711433675359 -0.8378351648126426];
LW3_1 = [-0.37984975150047506 -0.2184909869718593 1.1988538887056621 -0.09013131267262958 0.42572571959665634;0.005377055406523888 -0.2470672300742659 0.6849796562521872 0.618651831169771 0.8735089496418571];
LW3_2 = [0.5134250581403956 -0.8680560274581393 2.566125329239183 -1.1573864661520001;-0.29758239096448824 -0.15468966513811608 0.36125668153857243 -0.06464434008800854];

% Output 1
y1_step1.xoffset = [-1.7642067568382558;-2.494403660344114];
y1_step1.gain = [2.1319805438121087;0.8512844224637472];
y1_step1.ymin = [-1.0];

% ===== SIMULATION ========

% Format Input Arguments
isCellX = iscell(X);
if ~isCellX
  X = {X};
end

% Dimensions
TS = size(X,2); % timesteps
if ~isempty(X)
  Q = size(X{1},1); % samples/series
else
  Q = 0;
end

% Allocate Outputs
Y = cell(1,TS);

% Time loop
for ts=1:TS

    % Input 1
    X{1,ts} = X{1,ts}';
    Xp1 = mapminmax_apply(X{1,ts},x1_step1);
    
    % Layer 1
    a1 = tansig_apply(repmat(b1,1,Q) + IW1_1*Xp1);
    
    % Layer 2
    a2 = logsig_apply(repmat(b2,1,Q) + IW2_1*Xp1 + LW2_1*a1);
    
    % Layer 3
    a3 = repmat(b3,1,Q) + IW3_1*Xp1 + LW3_1*a1 + LW3_2*a2;
    
    % Output 1
    Y{1,ts} = mapminmax_reverse(a3,y1_step1);
    Y{1,ts} = Y{1,ts}';
end

% Final Delay States
Xf = cell(1,0);
Af = cell(3,0);

% Format Output Arguments
if ~isCellX
  Y = cell2mat(Y);
end
end

% ===== MODULE FUNCTIONS ========

% Map Minimum and Maximum Input Processing Function
function y = mapminmax_apply(x,settings)
  y = bsxfun(@minus,x,settings.xoffset);
  y = bsxfun(@times,y,settings.gain);
  y = bsxfun(@plus,y,settings.ymin);
end

% Sigmoid Symmetric Transfer Function
function a = tansig_apply(n,~)
  a = 2 ./ (1 + exp(-2*n)) - 1;
end

% Sigmoid Positive Transfer Function
function a = logsig_apply(n,~)
  a = 1 ./ (1 + exp(-n));
end

% Map Minimum and Maximum Output Reverse-Processing Function
function x = mapminmax_reverse(y,settings)
  x = bsxfun(@minus,y,settings.ymin);
  x = bsxfun(@rdivide,x,settings.gain);
  x = bsxfun(@plus,x,settings.xoffset);
end

